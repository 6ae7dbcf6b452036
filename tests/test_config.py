"""Settings layer file < environment < code, and a bad value names its path and source."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from oddjob_core import ConfigError, Oddjob
from oddjob_core.config import backend_options, env_overrides, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_no_configuration_means_filesystem_and_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert (settings.storage, settings.executor) == ("filesystem", "threads")
    assert settings.queue_names() == ["default"]


def test_oddjob_toml_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "oddjob.toml", 'storage = "memory"\n[queues.mail]\nworkers = 3\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.storage == "memory"
    assert settings.queue("mail").workers == 3


def test_pyproject_tool_table_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname="x"\n[tool.oddjob]\nlease = 12.5\n'
        '[tool.oddjob.postgres]\ndsn = "postgresql://db/app"\n',
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.lease == 12.5
    assert settings.backends == {"postgres": {"dsn": "postgresql://db/app"}}


def test_environment_overrides_file_and_code_overrides_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "oddjob.toml", 'storage = "filesystem"\n[queues.a]\nworkers = 2\n')
    env = {
        "ODDJOB_STORAGE": "memory",
        "ODDJOB_QUEUES__A__WORKERS": "5",
        "ODDJOB_POSTGRES__DSN": "postgresql://env/db",
        "ODDJOB_SQLSERVER_DSN": "ignored",
        "PATH": "/bin",
    }
    settings = load_settings(config, environ=env)
    assert settings.storage == "memory"
    assert settings.queue("a").workers == 5
    assert settings.backends["postgres"] == {"dsn": "postgresql://env/db"}
    settings = load_settings(config, {"queues": {"a": {"workers": 9}}}, environ=env)
    assert settings.queue("a").workers == 9


def test_environment_values_are_parsed_as_json_when_possible() -> None:
    env = env_overrides(
        {
            "ODDJOB_ALLOWED_PREFIXES": '["app.jobs"]',
            "ODDJOB_LEASE": "45",
            "ODDJOB_STORAGE": "postgres",
        }
    )
    assert env == {"allowed_prefixes": ["app.jobs"], "lease": 45, "storage": "postgres"}


def test_bad_value_names_its_path_and_file(tmp_path: Path) -> None:
    config = write(tmp_path / "oddjob.toml", '[queues.default]\nworkers = "many"\n')
    with pytest.raises(
        ConfigError,
        match=r"at queues\.default\.workers: Expected `int`.*"
        r"oddjob\.toml",
    ):
        load_settings(config, environ={})


def test_backend_options_are_validated_with_their_table_path() -> None:
    class Options(msgspec.Struct, forbid_unknown_fields=True):
        dsn: str
        pool: int = 4

    settings = load_settings(overrides={"pg": {"dsn": "x", "pool": "big"}}, environ={})
    with pytest.raises(ConfigError, match=r"at pg\.pool: Expected `int`"):
        backend_options(settings, "pg", Options)


def test_unknown_backend_names_the_installed_ones_and_never_invents_a_package() -> None:
    app = Oddjob(storage="nosuchstore")
    with pytest.raises(
        ConfigError, match=r"'nosuchstore' is not installed \(installed: .*memory"
    ) as info:
        _ = app.storage
    assert "pip install oddjob-nosuchstore" not in str(info.value)
    assert "known storage backends: filesystem, memory, postgres" in str(info.value)


def test_misspelt_backend_suggests_the_nearest_real_one() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'postgres'") as info:
        _ = Oddjob(storage="postgress").storage
    assert "oddjob-postgress" not in str(info.value)


def test_known_backend_that_is_missing_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from oddjob_core.plugins import install_hint

    assert install_hint("storage", "sqlserver", ["memory"]) == "run: pip install oddjob-sqlserver"
    assert install_hint("storage", "sqlservr", ["memory"]) == (
        "did you mean 'sqlserver' (pip install oddjob-sqlserver)?"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queues.default]\nworkers = 0\n", "workers must be >= 1"),
        ("wokers = 3\n", r"unknown setting 'wokers'.*known settings"),
        ("storage = \n", "not valid TOML"),
        (
            '[tool.oddjob]\nstorage = "memory"\n',
            r"\[tool.oddjob\] table, which is for pyproject.toml",
        ),
    ],
    ids=["out-of-range", "unknown-setting", "broken-toml", "tool-table-in-oddjob-toml"],
)
def test_config_file_mistakes_are_errors_that_name_the_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write(tmp_path / "oddjob.toml", text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})


def test_misspelt_table_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    config = write(tmp_path / "oddjob.toml", '[filesytem]\npath = "x"\n')
    with pytest.raises(
        ConfigError, match=r"unknown configuration table \[filesytem\]; did you mean \[filesystem\]"
    ):
        Oddjob(config)


def test_misspelt_keys_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'storag'.*did you mean 'storage'"):
        load_settings(overrides={"storag": "memory"}, environ={})
    with pytest.raises(ConfigError, match=r"'retry\.max_retry'.*did you mean 'max_retries'"):
        load_settings(overrides={"retry": {"max_retry": 3}}, environ={})
    with pytest.raises(ConfigError, match="unknown field `worker`; did you mean 'workers'"):
        load_settings(overrides={"queues": {"a": {"worker": 3}}}, environ={})
    with pytest.raises(ConfigError, match="unknown field `pat`; did you mean 'path'"):
        _ = Oddjob(storage="filesystem", filesystem={"pat": str(tmp_path)}).storage


def test_unimportable_module_in_imports_is_reported() -> None:
    with pytest.raises(ConfigError, match="'no_such_module_xyz' listed in `imports`"):
        Oddjob(storage="memory", imports=["no_such_module_xyz"])


def test_empty_allowed_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="would trust every module"):
        Oddjob(storage="memory", allowed_prefixes=[""])


def test_environment_reaches_a_hyphenated_backend_table() -> None:
    class Options(msgspec.Struct):
        path: str = "default"

    settings = load_settings(environ={"ODDJOB_EXAMPLE_SQLITE__PATH": "/tmp/jobs.db"})
    assert backend_options(settings, "example-sqlite", Options).path == "/tmp/jobs.db"

"""Start-up checks on what the server and the schema say, as pure functions (unit-tested)."""

from __future__ import annotations

from oddjob_core.errors import ConfigError

from .migrations import LATEST

#: OPENJSON (every insert and argument search) needs database compatibility level 130+
MIN_COMPATIBILITY_LEVEL = 130

#: SQL Server refuses a request with more than 2,100 parameters
MAX_PARAMETERS = 2100


def check_compatibility(level: int | None, database: str, target: str) -> None:
    """Refuse a database whose compatibility level is below 130 (restored from 2012/2014)."""
    if level is not None and int(level) < MIN_COMPATIBILITY_LEVEL:
        raise ConfigError(
            f"database {database} on {target} runs at compatibility level {level}; "
            f"oddjob-sqlserver needs {MIN_COMPATIBILITY_LEVEL} or higher (OPENJSON). Run "
            f"ALTER DATABASE [{database}] SET COMPATIBILITY_LEVEL = {MIN_COMPATIBILITY_LEVEL} "
            "(or higher; check your own queries against it first)"
        )


def check_not_newer(version: int, label: str, target: str) -> None:
    """Refuse a schema migrated by a newer oddjob-sqlserver than this one."""
    if version > LATEST:
        raise ConfigError(
            f"{label} on {target} is at migration {version}, newer than this "
            f"oddjob-sqlserver knows ({LATEST}): a newer version migrated it. Upgrade "
            "oddjob-sqlserver here (pip install -U oddjob-sqlserver) rather than run old code "
            "on a newer schema"
        )


def check_parameter_count(count: int, what: str) -> None:
    """Refuse, with a clear message, a statement that would exceed SQL Server's 2,100 parameters."""
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"{what} needs {count} parameters; SQL Server takes at most {MAX_PARAMETERS} per "
            "statement: filter on fewer argument values"
        )

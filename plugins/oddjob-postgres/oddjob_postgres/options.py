"""The ``[tool.oddjob.postgres]`` options table, validated when the storage is built."""

from __future__ import annotations

import re

import msgspec

#: Lower-case identifiers only, so the schema never needs quoting rules explained to anyone.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

DEFAULT_SCHEMA = "oddjob"


def check_identifier(value: str, what: str) -> str:
    """Refuse anything but a plain lower-case SQL identifier (it is spliced into SQL text)."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain PostgreSQL identifier: use 1-63 lower-case "
            "letters, digits or '_', not starting with a digit (e.g. 'oddjob')"
        )
    return value


def default_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema when ``notify_channel`` is not set."""
    return f"oddjob_{schema}"[:63]


class PostgresOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of ``storage = "postgres"``.

    ``dsn`` is a libpq connection string or URL. The empty default means libpq's
    own defaults and environment (``PGHOST``, ``PGPORT``, ``PGDATABASE``,
    ``PGUSER``, ``PGPASSWORD``/``~/.pgpass``), exactly like ``psql`` with no
    arguments. Put the password in the environment or ``.pgpass`` rather than
    in a config file.
    """

    dsn: str = ""
    #: every table lives in this schema, created by the migrations
    schema: str = DEFAULT_SCHEMA
    pool_min_size: int = 1
    #: a worker with N threads uses about N + 2 connections at full speed
    pool_max_size: int = 10
    #: apply pending migrations when the storage starts (guarded by an advisory lock)
    migrate_on_start: bool = True
    #: LISTEN/NOTIFY channel; default ``oddjob_<schema>``
    notify_channel: str | None = None
    #: connection for LISTEN when ``dsn`` goes through a pooler that cannot LISTEN
    #: (PgBouncer in transaction mode); default: ``dsn``
    listen_dsn: str | None = None
    #: server-side prepared statements for hot queries; turn off behind poolers that
    #: cannot keep them (PgBouncer in transaction mode before 1.21 / libpq < 17)
    prepared_statements: bool = True
    #: seconds to wait for a pooled connection before counting the attempt as failed
    connect_timeout: float = 5.0
    #: seconds during which transient errors (lost connection, deadlock...) are retried
    retry_timeout: float = 15.0
    application_name: str = "oddjob"
    #: delete succeeded and cancelled jobs this many days after they finished
    #: (checked by claiming workers every few minutes); None keeps them until purged
    retention_days: float | None = None
    #: the same for failed jobs, which usually deserve a look before they go
    failed_retention_days: float | None = None

    def __post_init__(self) -> None:
        check_identifier(self.schema, "schema")
        if self.notify_channel is not None:
            check_identifier(self.notify_channel, "notify_channel")
        if self.pool_min_size < 0:
            raise ValueError(f"pool_min_size must be >= 0, got {self.pool_min_size}")
        if self.pool_max_size < max(1, self.pool_min_size):
            raise ValueError(
                f"pool_max_size must be >= max(1, pool_min_size), got {self.pool_max_size}"
            )
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0, got {self.connect_timeout}")
        for name in ("retention_days", "failed_retention_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (or unset to keep jobs), got {value}")
        if self.retry_timeout < 0:
            raise ValueError(f"retry_timeout must be >= 0, got {self.retry_timeout}")

    @property
    def channel(self) -> str:
        """The notification channel actually used."""
        return self.notify_channel or default_channel(self.schema)

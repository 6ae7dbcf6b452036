"""The ``[tool.oddjob.sqlserver]`` options table, validated when the storage is built.

Schema and table prefix are spliced into SQL text (T-SQL cannot bind object
names as parameters), so both are checked against a strict pattern here and
quoted with ``[...]`` only after that check: nothing a user types reaches the
SQL text unvalidated.
"""

from __future__ import annotations

import re

import msgspec

from .odbc import build_connection_string

#: letters, digits and '_', not starting with a digit: needs no escaping inside [...]
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: the prefix is glued in front of 'jobs' / 'schema_migrations', so it may start with a digit
_PREFIX = re.compile(r"[A-Za-z0-9_]{0,40}")

DEFAULT_SCHEMA = "oddjob"
DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"

#: DATEADD takes an int; leases are sent in milliseconds, so at most ~24 days
MAX_LEASE_SECONDS = 2_000_000.0


def check_schema(value: str) -> str:
    """Refuse anything but a plain identifier as schema name (it is spliced into SQL text)."""
    if not _SCHEMA.fullmatch(value):
        raise ValueError(
            f"schema {value!r} is not a plain SQL Server identifier: use 1-64 letters, digits "
            "or '_', not starting with a digit (e.g. 'oddjob' or 'dbo')"
        )
    return value


def check_prefix(value: str) -> str:
    """Refuse anything but letters, digits and '_' as table prefix (spliced into SQL text)."""
    if not _PREFIX.fullmatch(value):
        raise ValueError(
            f"table_prefix {value!r} may only hold letters, digits or '_' (at most 40), "
            "e.g. 'app1_'; it is put in front of the table names jobs and schema_migrations"
        )
    return value


class SqlServerOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of ``storage = "sqlserver"``.

    Give either a complete ODBC ``connection_string`` or its parts (``driver``,
    ``server``, ``port``, ``database``, ``user``, ``password``, ``encrypt``,
    ``trust_server_certificate``). Keep the password out of config files:
    ``ODDJOB_SQLSERVER__PASSWORD`` in the environment works, as does a
    connection string with ``Trusted_Connection=yes`` or
    ``Authentication=ActiveDirectoryMsi``.
    """

    #: complete ODBC connection string; when set, the parts below are ignored
    connection_string: str = ""
    driver: str = DEFAULT_DRIVER
    server: str = "localhost"
    #: TCP port; None leaves it to the driver (1433, or the instance's port via SQL Browser)
    port: int | None = None
    #: empty: the login's default database
    database: str = ""
    user: str = ""
    password: str = ""
    #: ODBC Driver 18 encrypts by default ("yes"); "no", "yes" or "strict"; None: driver default
    encrypt: str | None = None
    #: accept a self-signed server certificate (development servers, containers)
    trust_server_certificate: bool = False
    #: more ODBC attributes for the parts form, e.g. {"TDS_Version" = "7.4"} for FreeTDS
    odbc_attributes: dict[str, str] = {}
    #: every table lives in this schema (created by the migrations unless it exists)
    schema: str = DEFAULT_SCHEMA
    #: put in front of each table name, so several apps can share one schema
    table_prefix: str = ""
    #: connections kept open; a worker with N threads per queue uses about N + 2
    pool_size: int = 10
    #: seconds to wait for the login (ODBC login timeout)
    connect_timeout: float = 5.0
    #: seconds a statement may run before the driver cancels it (0: no limit)
    query_timeout: float = 30.0
    #: seconds a statement waits for a row lock before giving up (retried as transient; 0: no limit)
    lock_timeout: float = 10.0
    #: seconds during which transient errors (deadlock, lost connection, timeout) are retried
    retry_timeout: float = 15.0
    #: seconds during which "the database is failing over / resuming" errors (Azure SQL 40613,
    #: 40197, 40501, 4060...) are retried: a failover or a serverless resume takes 30-60 s
    failover_timeout: float = 90.0
    #: apply pending migrations when the storage starts (serialized by sp_getapplock)
    migrate_on_start: bool = True
    #: lease in seconds for claims, overriding the core ``lease`` setting (None: use it)
    lease: float | None = None
    #: longest idle sleep between claim attempts when no job is due (SQL Server has no
    #: push notification oddjob could use); None: the core ``poll_interval``
    poll_interval: float | None = None
    #: shows in sys.dm_exec_sessions.program_name
    application_name: str = "oddjob"
    #: delete succeeded and cancelled jobs this many days after they finished
    retention_days: float | None = None
    #: the same for failed jobs, which usually deserve a look before they go
    failed_retention_days: float | None = None

    def __post_init__(self) -> None:
        check_schema(self.schema)
        check_prefix(self.table_prefix)
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        if self.encrypt is not None and self.encrypt.lower() not in {
            "yes",
            "no",
            "strict",
            "mandatory",
            "optional",
            "true",
            "false",
        }:
            raise ValueError(f"encrypt must be 'yes', 'no' or 'strict', got {self.encrypt!r}")
        for name in (
            "connect_timeout",
            "query_timeout",
            "lock_timeout",
            "retry_timeout",
            "failover_timeout",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lease is not None and not 0 < self.lease <= MAX_LEASE_SECONDS:
            raise ValueError(f"lease must be > 0 and <= {MAX_LEASE_SECONDS:g} s, got {self.lease}")
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {self.poll_interval}")
        for name in ("retention_days", "failed_retention_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (or unset to keep jobs), got {value}")
        for key in self.odbc_attributes:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_ ]*", key):
                raise ValueError(f"odbc_attributes key {key!r} is not an ODBC attribute name")

    def odbc_connection_string(self) -> str:
        """The connection string handed to ``pyodbc.connect`` (holds the password: never log it)."""
        if self.connection_string:
            return self.connection_string
        return build_connection_string(
            driver=self.driver,
            server=self.server,
            port=self.port,
            database=self.database,
            user=self.user,
            password=self.password,
            encrypt=self.encrypt,
            trust_server_certificate=self.trust_server_certificate,
            application_name=self.application_name,
            extra=self.odbc_attributes,
        )

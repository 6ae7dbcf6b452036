"""What ``oddjob doctor`` needs from PostgreSQL: drop its private schema, show the server's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oddjob_core.doctor import DoctorSupport

if TYPE_CHECKING:
    import psycopg

    from .database import Database

#: server settings that matter to oddjob-postgres, shown in doctor's report
SETTINGS = (
    "server_version",
    "default_transaction_isolation",
    "max_connections",
    "synchronous_commit",
)


class PostgresDoctor(DoctorSupport):
    """Mixed into ``PostgresStorage``."""

    schema: str
    database: Database

    def drop_namespace(self) -> None:
        def drop(conn: psycopg.Connection[Any], retried: bool) -> None:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        self.database.run(f"dropping schema '{self.schema}'", drop)

    def server_settings(self) -> dict[str, str]:
        def read(conn: psycopg.Connection[Any], retried: bool) -> dict[str, str]:
            return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in SETTINGS}  # type: ignore[index]

        return self.database.run("reading the server's settings", read)

"""Object names spliced into SQL text: built only from validated identifiers, quoted with [...]."""

from __future__ import annotations

from dataclasses import dataclass

from .options import DEFAULT_SCHEMA, check_prefix, check_schema


@dataclass(frozen=True)
class Names:
    """The quoted names of one installation (schema + table prefix).

    Index names are scoped to their table, but constraint names (PK, CHECK,
    DEFAULT) are scoped to the schema: both carry the prefix so two prefixed
    installations can share a schema.
    """

    schema: str = DEFAULT_SCHEMA
    prefix: str = ""

    def __post_init__(self) -> None:
        check_schema(self.schema)
        check_prefix(self.prefix)

    @property
    def quoted_schema(self) -> str:
        """``[schema]``."""
        return f"[{self.schema}]"

    @property
    def jobs(self) -> str:
        """``[schema].[<prefix>jobs]``."""
        return f"[{self.schema}].[{self.prefix}jobs]"

    @property
    def migrations(self) -> str:
        """``[schema].[<prefix>schema_migrations]``."""
        return f"[{self.schema}].[{self.prefix}schema_migrations]"

    @property
    def kv(self) -> str:
        """``[schema].[<prefix>kv]``: shared key/value state (schedules), migration 4."""
        return f"[{self.schema}].[{self.prefix}kv]"

    def obj(self, kind: str, suffix: str = "") -> str:
        """A constraint or index name, e.g. ``obj("PK")`` = ``[PK_<prefix>jobs]``."""
        return f"[{kind}_{self.prefix}jobs{'_' + suffix if suffix else ''}]"

    @property
    def lock_resource(self) -> str:
        """The sp_getapplock resource that serializes migrations.

        Per schema, not per prefix: installations sharing a schema may both
        need to create it, and must not race doing so.
        """
        return f"oddjob-migrate:{self.schema}"

    def label(self) -> str:
        """How messages name the installation: ``schema 'oddjob'`` (+ table prefix)."""
        text = f"schema '{self.schema}'"
        return text + (f" (table prefix '{self.prefix}')" if self.prefix else "")

"""oddjob storage backend ``postgres``: PostgreSQL through psycopg 3.

from oddjob_postgres import PostgresStorage, PostgresOptions, add_in_transaction
"""

from .options import PostgresOptions
from .storage import PostgresStorage, add_in_transaction

__all__ = ["PostgresOptions", "PostgresStorage", "add_in_transaction"]

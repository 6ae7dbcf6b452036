"""oddjob storage backend ``sqlserver``: Microsoft SQL Server through pyodbc.

from oddjob_sqlserver import SqlServerStorage, SqlServerOptions, add_in_transaction
"""

from .options import SqlServerOptions
from .storage import SqlServerStorage, add_in_transaction

__all__ = ["SqlServerOptions", "SqlServerStorage", "add_in_transaction"]

"""The SQLite backend: one file, a writer and a reader connection.

`store` holds the SqliteStorage class; `schema` the tables and their upgrades; `connection`
how the file is opened and transactions run; `registry`, `ingest` and `queries` the SQL of
each part of the Storage protocol; `sql` the pieces they share.
"""

from collector.storage.sqlite.connection import sqlite_path
from collector.storage.sqlite.schema import SCHEMA_VERSION
from collector.storage.sqlite.store import SqliteStorage

__all__ = ["SCHEMA_VERSION", "SqliteStorage", "sqlite_path"]

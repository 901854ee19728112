"""The SQLite backend: one file, a writer and a reader connection.

`store` holds the SqliteStorage class; `schema` the tables, `upgrade` and `upgrade_steps` their
upgrades; `connection` how the file is opened and transactions run; `registry`, `tokens`,
`ingest` (with `journal` and `rollups`) and `retention` the SQL of their parts of the Storage
protocol. The reads both backends run alike are `collector.storage.queries` and
`collector.storage.reads`; `buckets`, `feed`, `quality` and `audit` are their SQLite statements
and connection; `sql` the pieces these share.
"""

from collector.storage.sqlite.connection import sqlite_path
from collector.storage.sqlite.schema import SCHEMA_VERSION
from collector.storage.sqlite.store import SqliteStorage

__all__ = ["SCHEMA_VERSION", "SqliteStorage", "sqlite_path"]

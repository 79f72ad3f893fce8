"""The DuckDB databases ``om.sql`` runs queries in: each reads exactly the part files of the
versions a query names, and nothing else.

DuckDB's file access, extension loading and configuration are settings of a whole
database, not of a connection, so a query runs in a database that was locked, once opened,
to the files it may read (``allowed_paths``; ``enable_external_access`` off, no extension
installed or loaded, ``lock_configuration`` on): the query cannot read other files (other
versions' parts by glob, ``/etc/passwd``), write (``COPY ... TO``), ``ATTACH``, ``INSTALL`` or
``LOAD``. Opening a database costs 25 to 100 ms where a connection to one costs a
millisecond, so the few most recently used are kept, keyed by their files: a query that
reads the same versions again (the common case) reuses one, and DuckDB's cache of the files.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from omfs.errors import MissingExtraError, QueryError

__all__ = [
    "PUT_FIRST",
    "PUT_FIRST_CLI",
    "SQL_EXTRA",
    "connect",
    "duckdb_module",
    "one_line",
    "refusal",
]

SQL_EXTRA = "pip install 'omfs[sql]'"

#: what to do instead of reading a file in a query (in the API's, the command's terms)
PUT_FIRST = (
    "To query a file, put it as a dataset first (om.datasets.put(pd.read_csv(path), 'name')) "
    "and name the dataset."
)
PUT_FIRST_CLI = (
    "To query a file, put it as a dataset first (om datasets put PATH NAME) and name it."
)

#: how many locked databases are kept (besides the one that reads no file)
KEPT = 4

_DATABASES: OrderedDict[frozenset[str], Any] = OrderedDict()
_PID = [os.getpid()]
_LOCK = threading.Lock()

#: what locks a database once its allowed files are set (in this order: the last locks)
_LOCKS = (
    "set enable_external_access = false",
    "set autoinstall_known_extensions = false",
    "set autoload_known_extensions = false",
    "set lock_configuration = true",
)


def duckdb_module() -> Any:
    """The ``duckdb`` module (MissingExtraError saying how to install it)."""
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError(f"SQL needs DuckDB, which is not installed: {SQL_EXTRA}") from None
    return duckdb


def connect(paths: Iterable[str] = ()) -> Any:
    """A new connection (a cursor) to an in-memory database that may read the files
    ``paths`` and nothing else (none: it only parses and types). What a connection
    registers or views lives in it alone."""
    key = frozenset(paths)
    with _LOCK:
        if _PID[0] != os.getpid():  # a forked child opens its own
            _DATABASES.clear()
            _PID[0] = os.getpid()
        database = _DATABASES.get(key)
        if database is None:
            database = _open(key)
            _DATABASES[key] = database
            # the least recently used go (not closed: a query may still run on a cursor)
            while len(_DATABASES) > KEPT + int(frozenset() in _DATABASES):
                oldest = next(k for k in _DATABASES if k)
                del _DATABASES[oldest]
        _DATABASES.move_to_end(key)
        return database.cursor()


def _open(paths: frozenset[str]) -> Any:
    """A new in-memory database, locked to reading ``paths``."""
    database = duckdb_module().connect()
    database.execute("set allowed_paths = ?", [sorted(paths)])
    for statement in _LOCKS:
        database.execute(statement)
    return database


def one_line(exc: BaseException) -> str:
    """The first line of DuckDB's message, without its ``LINE 1: ...`` pointer."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def refusal(exc: BaseException) -> QueryError | None:
    """The QueryError for what the lock refused the query (a file, an extension, another
    database, a setting), or None when DuckDB refused it for another reason."""
    duckdb = duckdb_module()
    locked = "configuration has been locked" in str(exc)
    if not isinstance(exc, duckdb.PermissionException) and not locked:
        return None
    return QueryError(
        "om.sql reads only the datasets the query names: no other files, no writing files, "
        f"no extensions, no other databases, no settings (DuckDB: {one_line(exc)}).",
        hint=PUT_FIRST,
        cli_hint=PUT_FIRST_CLI,
    )

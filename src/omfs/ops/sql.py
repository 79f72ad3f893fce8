"""SQL over dataset versions with DuckDB: ``om.sql("select ... from \\"sales@prod\\"")``.

DuckDB's own parser names the tables a query reads; each is a dataset selector (``sales``,
``sales@prod``, ``sales@v3``, ``bucket/sales``, ``context:bucket/sales@prod``), resolved to
one version and handed to DuckDB as exactly that version's parts, lazily: on a local folder
as a view over ``read_parquet`` of the part files (see :mod:`omfs.ops.sql_native`),
elsewhere as the version's Arrow dataset. DuckDB pushes its column selection and filters
into the scan, and the statistics omfs keeps per part skip the parts a filter cannot match.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omfs.errors import MissingExtraError, NotFoundError, QueryError, UsageError
from omfs.objects.datasets import DatasetStore
from omfs.ops.sql_native import attach, query_tree

__all__ = ["SQL_EXTRA", "DatasetRef", "referenced_names", "resolve", "sql"]

SQL_EXTRA = "pip install 'omfs[sql]'"

#: how many existing datasets an unknown name's error lists
_SHOWN = 20


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a query names, resolved: the store it is in, its name and version."""

    table: str
    store: DatasetStore
    name: str
    version: int

    def lineage(self) -> dict[str, Any]:
        """What a version stored with ``into=`` records of this input."""
        return {
            "table": self.table,
            "context": self.store.storage.url,
            "bucket": self.store.bucket,
            "name": self.name,
            "version": self.version,
        }


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError(f"SQL needs DuckDB, which is not installed: {SQL_EXTRA}") from None
    return duckdb


_DATABASE: dict[int, Any] = {}
_DATABASE_LOCK = threading.Lock()


def _connection() -> Any:
    """A new connection (a cursor) to this process's in-memory DuckDB database: it starts
    in a millisecond where a new database takes tens, and DuckDB's caches of the files it
    read outlive one query. What a query registers or views lives in its connection only."""
    duckdb = _duckdb()
    pid = os.getpid()  # a forked child opens its own
    with _DATABASE_LOCK:
        if pid not in _DATABASE:
            _DATABASE.clear()
            _DATABASE[pid] = duckdb.connect()
        return _DATABASE[pid].cursor()


def _one_line(exc: BaseException) -> str:
    """The first line of DuckDB's message, without its ``LINE 1: ...`` pointer."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _arrow(result: Any) -> Any:
    """A DuckDB relation's rows as a pyarrow Table (``arrow()`` before DuckDB 1.4)."""
    if hasattr(result, "to_arrow_table"):
        return result.to_arrow_table()
    return result.arrow()


def referenced_names(query: str) -> list[str]:
    """The tables ``query`` reads that name no schema (CTEs left out), as DuckDB's parser
    sees them, sorted: the dataset selectors to resolve."""
    duckdb = _duckdb()
    try:
        plain = duckdb.get_table_names(query)
        qualified = duckdb.get_table_names(query, qualified=True)
    except duckdb.Error as exc:
        raise QueryError(f"The query does not parse: {_one_line(exc)}") from None
    bare = {_bare_name(entry) for entry in qualified}
    return sorted(name for name in plain if name in bare)


def _bare_name(entry: str) -> str | None:
    """The table of one entry of DuckDB's qualified table names (``"sales@prod" AS s``,
    ``main.t``), or None when it names a schema (DuckDB's own tables)."""
    if entry.startswith('"'):
        chars, i = [], 1
        while i < len(entry):
            if entry[i] == '"':
                if entry[i + 1 : i + 2] != '"':
                    break
                i += 1
            chars.append(entry[i])
            i += 1
        name, rest = "".join(chars), entry[i + 1 :]
    else:
        head = entry.split(" ", 1)[0]
        name, rest = head.split(".", 1)[0], head[len(head.split(".", 1)[0]) :]
    return None if rest.startswith(".") else name


def resolve(
    store: DatasetStore, table: str, open_context: Callable[[str], DatasetStore] | None = None
) -> DatasetRef:
    """The dataset version a table name selects: ``name[@tag|@vN]`` in ``store``'s bucket,
    ``bucket/name`` in another bucket of its context (when the bucket's dataset store has
    ``name`` and this bucket has no ``bucket/name``), ``context:bucket/name`` in a context
    of the config file. NotFoundError names it and the datasets that exist."""
    target, selector = store, table
    if ":" in table:
        if open_context is None:
            raise UsageError(f"{table!r}: named contexts are not available here")
        context, _, selector = table.partition(":")
        bucket, _, rest = selector.partition("/")
        target, selector = open_context(f"{context}:{bucket}" if rest else context), rest or bucket
    else:
        target, selector = _in_bucket(store, table)
    try:
        name, rec, _ = target.select(selector)
    except NotFoundError:
        raise _unknown(target, table) from None
    return DatasetRef(table, target, name, rec.version)


def _in_bucket(store: DatasetStore, table: str) -> tuple[DatasetStore, str]:
    """``bucket/name``: the other bucket's store when this bucket has no dataset of the
    whole name and the first part is a bucket of the context."""
    bucket, sep, rest = table.partition("/")
    if not sep or store.exists(table.partition("@")[0]):
        return store, table
    from omfs.objects.versioned import bucket_names

    if bucket in bucket_names(store.storage):
        return DatasetStore(store.storage, bucket), rest
    return store, table


def _unknown(store: DatasetStore, table: str) -> NotFoundError:
    names = store.list()
    shown = ", ".join(repr(n) for n in names[:_SHOWN]) + (" ..." if len(names) > _SHOWN else "")
    there = f"the datasets there: {shown}" if names else "it has no datasets"
    return NotFoundError(
        f"The query names {table!r}, which is no dataset version in bucket {store.bucket!r} "
        f"of context {store.storage.url!r}; {there}. Quote names with '@' or '/' in the "
        'query: select * from "sales@prod".'
    )


def sql(
    store: DatasetStore,
    query: str,
    *,
    as_arrow: bool = False,
    into: str | None = None,
    open_context: Callable[[str], DatasetStore] | None = None,
) -> Any:
    """Run ``query`` in DuckDB over the dataset versions it names (see :func:`resolve`).

    Returns a pandas DataFrame (a pyarrow Table with ``as_arrow=True``); with ``into=NAME``
    the answer is stored as a new version of dataset ``NAME`` whose lineage names the
    query and the exact versions read, and its metadata is returned.
    """
    duckdb = _duckdb()
    refs = [resolve(store, t, open_context) for t in referenced_names(query)]
    con = _connection()
    try:
        tree = query_tree(con, query) if any(r.store.storage.is_local for r in refs) else None
        for ref in refs:
            attach(con, ref.table, ref.store, ref.name, ref.version, tree)
        try:
            result = con.sql(query)
            answer = None if result is None else _arrow(result)
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {_one_line(exc)}") from None
    finally:
        con.close()
    if answer is None:
        raise QueryError("The query returns no rows: om.sql runs queries that answer a table")
    if into is not None:
        lineage = {
            "sql": {
                "query": query,
                "engine": f"duckdb {duckdb.__version__}",
                "read": [r.lineage() for r in refs],
            }
        }
        data = answer if as_arrow else answer.to_pandas()
        return store.put(data, into, lineage=lineage)
    return answer if as_arrow else answer.to_pandas()

"""SQL over dataset versions with DuckDB: ``om.sql("select ... from \\"sales@prod\\"")``.

DuckDB's own parser names the tables a query reads; each is a dataset selector (``sales``,
``sales@prod``, ``sales@v3``, ``bucket/sales``, ``context:bucket/sales@prod``), resolved to
one version and handed to DuckDB as exactly that version's parts, lazily: on a local folder
as a view over ``read_parquet`` of the part files (see :mod:`omfs.ops.sql_native`),
elsewhere as the version's Arrow dataset. DuckDB pushes its column selection and filters
into the scan, and the statistics omfs keeps per part skip the parts a filter cannot match.
The query runs in a database that may read those part files and nothing else
(:mod:`omfs.ops.sql_sandbox`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omfs.errors import InvalidNameError, NotFoundError, QueryError, UsageError
from omfs.names import split_selector
from omfs.objects.datasets import DatasetStore
from omfs.ops.sql_native import query_tree, source
from omfs.ops.sql_sandbox import (
    PUT_FIRST,
    PUT_FIRST_CLI,
    SQL_EXTRA,
    connect,
    duckdb_module,
    one_line,
    refusal,
)

__all__ = ["SQL_EXTRA", "DatasetRef", "referenced_names", "resolve", "sql"]

#: how many existing datasets (tags, versions) an unknown name's error lists
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


def _arrow(result: Any) -> Any:
    """A DuckDB relation's rows as a pyarrow Table (``arrow()`` before DuckDB 1.4)."""
    if hasattr(result, "to_arrow_table"):
        return result.to_arrow_table()
    return result.arrow()


def referenced_names(query: str) -> list[str]:
    """The tables ``query`` reads that name no schema (CTEs left out), as DuckDB's parser
    sees them, sorted: the dataset selectors to resolve."""
    duckdb = duckdb_module()
    try:
        plain = duckdb.get_table_names(query)
        qualified = duckdb.get_table_names(query, qualified=True)
    except duckdb.Error as exc:
        error = one_line(exc)
        hint = _quoting(query, error)
        raise QueryError(f"The query does not parse: {error}.", hint=hint) from None
    bare = {_bare_name(entry) for entry in qualified}
    return sorted(name for name in plain if name in bare)


def _quoting(query: str, error: str) -> str | None:
    """Where DuckDB stumbled on an ``@`` or a ``/`` (``sales@v2`` reads as an operator),
    how to quote the first unquoted dataset name holding it; else None."""
    near = re.search(r'near "([@/])"', error)
    if near is None:
        return None
    bare = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", query)
    name = r"[A-Za-z_][\w.-]*(?:[@/][\w.-]+)*"
    if near.group(1) == "@":
        found = re.search(rf"(?<![\w.])({name}@[\w.-]+)", bare)
    else:
        found = re.search(rf"(?i:from|join)\s+({name}/[\w.@-]+)", bare)
    if found is None:
        return None
    return f'Quote a dataset name with "@" or "/" in double quotes: "{found.group(1)}".'


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
    try:
        target, selector = _target(store, table, open_context)
        try:
            name, rec, _ = target.select(selector)
        except NotFoundError:
            raise _unknown(target, table, selector) from None
    except InvalidNameError as exc:
        raise InvalidNameError(
            f"The query names {table!r}, which is no dataset: {exc}.",
            hint=f"om.sql reads only datasets. {PUT_FIRST}",
            cli_hint=f"om sql reads only datasets. {PUT_FIRST_CLI}",
        ) from None
    return DatasetRef(table, target, name, rec.version)


def _target(
    store: DatasetStore, table: str, open_context: Callable[[str], DatasetStore] | None
) -> tuple[DatasetStore, str]:
    """The dataset store ``table`` names a dataset of, and its selector there."""
    if ":" not in table:
        return _in_bucket(store, table)
    if open_context is None:
        raise UsageError(f"{table!r}: named contexts are not available here")
    context, _, selector = table.partition(":")
    bucket, _, rest = selector.partition("/")
    return open_context(f"{context}:{bucket}" if rest else context), rest or bucket


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


def _unknown(store: DatasetStore, table: str, selector: str) -> NotFoundError:
    """The error for a table that names no dataset version: what exists instead."""
    name, at, _ = selector.partition("@")
    if at and store.exists(name):
        return NotFoundError(f"The query names {table!r}: {_no_such_version(store, selector)}.")
    names = store.list()
    shown = ", ".join(repr(n) for n in names[:_SHOWN]) + (" ..." if len(names) > _SHOWN else "")
    there = f"the datasets there: {shown}" if names else "it has no datasets"
    return NotFoundError(
        f"The query names {table!r}, which is no dataset version in bucket {store.bucket!r} "
        f"of context {store.storage.url!r}; {there}. Quote names with '@' or '/' in the "
        'query: select * from "sales@prod".'
    )


def _no_such_version(store: DatasetStore, selector: str) -> str:
    """Why ``name@selector`` selects nothing when dataset ``name`` exists, and the tags
    and versions it has."""
    name, wanted = split_selector(selector)
    live = [m.version for m in store.versions(name)]
    tags = store.tags(name)
    if isinstance(wanted, int):
        gone = store.state(name, full=True).records.get(wanted)
        what = f"its version {wanted} was dropped" if gone else f"has no version {wanted}"
    else:
        what = f"has no tag {wanted!r}"
    spans = (
        f"v{live[0]} to v{live[-1]}"
        if live == list(range(live[0], live[-1] + 1))
        else ", ".join(f"v{v}" for v in live[:_SHOWN]) + (" ..." if len(live) > _SHOWN else "")
    )
    listed = ", ".join(f"{t} (v{v})" for t, v in list(tags.items())[:_SHOWN])
    return f"dataset {name!r} exists but {what}; its versions: {spans}; " + (
        f"its tags: {listed}" if tags else "it has no tags"
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
    duckdb = duckdb_module()
    refs = [resolve(store, t, open_context) for t in referenced_names(query)]
    planner = connect()  # reads no file: it parses and types
    try:
        tree = query_tree(planner, query) if any(r.store.storage.is_local for r in refs) else None
        sources = [source(planner, r.table, r.store, r.name, r.version, tree) for r in refs]
    finally:
        planner.close()
    con = connect(path for s in sources for path in s.paths)
    try:
        for s in sources:
            s.attach(con)
        result = con.sql(query)
        answer = None if result is None else _arrow(result)
    except duckdb.Error as exc:
        raise refusal(exc) or QueryError(f"The query failed: {one_line(exc)}") from None
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

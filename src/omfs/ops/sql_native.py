"""DuckDB reads a version's Parquet parts itself when they are files on this machine.

On a local folder, a dataset a query names becomes a DuckDB view over ``read_parquet`` of
exactly the version's part files (never a listing of ``_data/``): DuckDB decodes Parquet
natively, in parallel, with its own projection and row-group pruning, instead of taking
Arrow batches that pyarrow decoded first. The parts are chosen omfs-side: where the query
reads a dataset in one place with a plain ``WHERE`` of column-against-constant terms, the
parts whose logged statistics cannot match are left out without being opened. The view
casts every column to the type the Arrow dataset of the version gives DuckDB, so a query
answers with the same types either way; a version whose types DuckDB's Parquet reader
cannot give back as stored (durations) is handed over as its Arrow dataset instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omfs.objects.datasets import DatasetStore

__all__ = ["Source", "query_tree", "scan_filter", "source"]

#: the Arrow dataset as DuckDB takes it best: strings as the dictionaries Parquet keeps
_AS_PARQUET = {"strings_as_dictionary": True}

_COMPARE = {
    "COMPARE_EQUAL": "==",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}
_FLIPPED = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def quoted(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def query_tree(con: Any, query: str) -> dict[str, Any] | None:
    """DuckDB's parse tree of ``query`` (``json_serialize_sql``), or None when it has none
    (or no ``WHERE`` to prune parts with)."""
    import duckdb

    if "where" not in query.lower():
        return None
    try:
        rows = con.execute("select json_serialize_sql(?)", [query]).fetchall()
        tree = json.loads(rows[0][0])
    except (duckdb.Error, ValueError, TypeError, IndexError):  # no tree: no pruning
        return None
    return None if tree.get("error") else tree


@dataclass
class Source:
    """How a query's ``table`` reads a version: ``view``, a query over ``read_parquet`` of
    the part files ``paths`` (the files the query's database may read), or else the Arrow
    data ``arrow()`` gives (also where DuckDB's reader refuses the view)."""

    table: str
    arrow: Callable[[], Any]
    view: str | None = None
    paths: tuple[str, ...] = ()

    def attach(self, con: Any) -> None:
        """Make ``table`` in ``con`` read the version."""
        import duckdb

        if self.view is not None:
            try:
                con.execute(f"create temp view {quoted(self.table)} as {self.view}")
                return
            except duckdb.PermissionException:
                raise
            except duckdb.Error:  # what DuckDB's reader does not take, the Arrow dataset reads
                pass
        con.register(self.table, self.arrow())


def source(con: Any, table: str, store: DatasetStore, name: str, version: int, tree: Any) -> Source:
    """How ``table`` reads version ``version`` of dataset ``name``: a view over
    ``read_parquet`` of its part files on a local folder, else its Arrow dataset (``con``
    types the columns; it reads nothing)."""

    def arrow() -> Any:
        return store.to_arrow_dataset(name, version=version, **_AS_PARQUET)

    if not store.storage.is_local:
        data = arrow()
        return Source(table, lambda: data)
    dataset = store.to_arrow_dataset(name, version=version)
    types = _duckdb_types(con, dataset.schema)
    if types is None or not dataset.files:
        return Source(table, arrow)
    where = scan_filter(tree, table, dataset.schema) if tree is not None else None
    fragments = dataset.get_fragments() if where is None else dataset.get_fragments(where)
    paths = [f.path for f in fragments]
    if not paths:  # no part can match: the rows of none, typed as stored
        return Source(table, dataset.schema.empty_table)
    parts = store.local_parts(name, version, paths)
    held = None if any("stats" not in p for p in parts) else {c for p in parts for c in p["stats"]}
    # by their statistics, every part holds every column: DuckDB reads one footer to bind
    alike = held is not None and all(len(p["stats"]) == len(types) for p in parts)
    return Source(table, arrow, _select(paths, types, held, union=not alike), tuple(paths))


def _select(paths: list[str], types: dict[str, str], held: set[str] | None, *, union: bool) -> str:
    """The view's query: the stored columns, in order, each as the type DuckDB gives it
    from Arrow (a no-op cast where the Parquet reader already agrees); a column none of the
    parts holds (by their statistics: added after them) as nulls. ``union``: the parts'
    columns differ, so DuckDB matches them by name (reading every footer to bind)."""
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    columns = ", ".join(
        quoted(n)
        if t == '"NULL"'
        else f"cast({'null' if held is not None and n not in held else quoted(n)} as {t}) "
        f"as {quoted(n)}"
        for n, t in types.items()
    )
    by_name = "union_by_name = true, " if union else ""
    scan = f"read_parquet([{files}], {by_name}hive_partitioning = false)"
    return f"select {columns} from {scan}"


def _duckdb_types(con: Any, schema: Any) -> dict[str, str] | None:
    """Each column's DuckDB type as the version's Arrow dataset gives it (read from an
    empty table: nothing is read), or None when DuckDB's Parquet reader cannot give one of
    them back as stored."""
    import duckdb
    import pyarrow as pa

    if any(_has_duration(f.type) for f in schema) or len(set(schema.names)) != len(schema):
        return None
    try:
        empty = con.from_arrow(schema.empty_table())
        return {n: str(t) for n, t in zip(empty.columns, empty.types, strict=True)}
    except (duckdb.Error, pa.ArrowException):  # a type DuckDB does not take from Arrow
        return None


def _has_duration(t: Any) -> bool:
    """Whether type ``t`` is or holds a duration (Parquet keeps it as a bare integer)."""
    import pyarrow as pa

    if pa.types.is_duration(t):
        return True
    if pa.types.is_dictionary(t):
        return _has_duration(t.value_type)
    return any(_has_duration(t.field(i).type) for i in range(t.num_fields))


def scan_filter(tree: dict[str, Any], table: str, schema: Any) -> Any:
    """What every row the query reads from ``table`` satisfies, as a pyarrow expression
    over ``schema`` (None: nothing known). Only when ``table`` is read in one place, alone
    in the ``FROM`` of a ``SELECT``: the terms of its ``WHERE`` that compare a column of the
    table with a number or a text; anything else is left to DuckDB."""
    found: list[dict[str, Any]] = []
    _selects_of(tree.get("statements"), table, found)
    if len(found) != 1 or _occurrences(tree, table) != 1:
        return None
    node = found[0]
    source = node["from_table"]
    where = node.get("where_clause")
    if where is None or node.get("sample") or source.get("sample"):
        return None
    if source.get("column_name_alias") or source.get("at_clause"):
        return None
    names = {table.lower(), (source.get("alias") or table).lower()}
    return _Terms(schema, names).expression(where)


def _selects_of(node: Any, table: str, found: list[dict[str, Any]]) -> None:
    """The SELECTs under ``node`` whose ``FROM`` is ``table`` alone."""
    if isinstance(node, list):
        for item in node:
            _selects_of(item, table, found)
    elif isinstance(node, dict):
        source = node.get("from_table")
        if node.get("type") == "SELECT_NODE" and _is_table(source, table):
            found.append(node)
        for value in node.values():
            _selects_of(value, table, found)


def _is_table(source: Any, table: str) -> bool:
    return (
        isinstance(source, dict)
        and source.get("type") == "BASE_TABLE"
        and source.get("table_name") == table
        and not source.get("schema_name")
        and not source.get("catalog_name")
    )


def _occurrences(node: Any, table: str) -> int:
    """How many times the parse tree reads ``table`` (as a base table)."""
    if isinstance(node, list):
        return sum(_occurrences(item, table) for item in node)
    if isinstance(node, dict):
        own = int(node.get("type") == "BASE_TABLE" and node.get("table_name") == table)
        return own + sum(_occurrences(v, table) for v in node.values())
    return 0


class _Terms:
    """A WHERE clause's terms over one table's columns, as pyarrow expressions."""

    def __init__(self, schema: Any, tables: set[str]):
        self.schema = schema
        self.tables = tables
        lowered: dict[str, list[str]] = {}
        for n in schema.names:
            lowered.setdefault(n.lower(), []).append(n)
        # DuckDB matches names regardless of case: a name two columns share is skipped
        self.columns = {k: v[0] for k, v in lowered.items() if len(v) == 1}

    def expression(self, node: dict[str, Any]) -> Any:
        """``node`` as an expression every row it keeps satisfies, or None."""
        kind = node.get("type")
        if kind in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            terms = [self.expression(c) for c in node.get("children", [])]
            if kind == "CONJUNCTION_AND":
                known = [t for t in terms if t is not None]  # fewer terms: a weaker claim
                return _fold(known, lambda a, b: a & b)
            return None if any(t is None for t in terms) else _fold(terms, lambda a, b: a | b)
        if kind in _COMPARE:
            return self._comparison(_COMPARE[kind], node.get("left"), node.get("right"))
        if kind == "COMPARE_BETWEEN":
            low = self._comparison(">=", node.get("input"), node.get("lower"))
            high = self._comparison("<=", node.get("input"), node.get("upper"))
            return None if low is None or high is None else low & high
        if kind == "COMPARE_IN":
            column, *values = node.get("children", [None])
            terms = [self._comparison("==", column, v) for v in values]
            return (
                None
                if not terms or any(t is None for t in terms)
                else _fold(terms, lambda a, b: a | b)
            )
        return None

    def _comparison(self, op: str, left: Any, right: Any) -> Any:
        import pyarrow.compute as pc

        column = self._column(left)
        if column is None:
            column, op, right = self._column(right), _FLIPPED[op], left
        if column is None:
            return None
        value = self._constant(right, self.schema.field(column).type)
        if value is None:
            return None
        field = pc.field(column)
        return {
            "==": field == value,
            "<": field < value,
            "<=": field <= value,
            ">": field > value,
            ">=": field >= value,
        }[op]

    def _column(self, node: Any) -> str | None:
        if not isinstance(node, dict) or node.get("type") != "COLUMN_REF":
            return None
        names = node.get("column_names") or []
        if len(names) == 2 and str(names[0]).lower() in self.tables:
            names = names[1:]
        return self.columns.get(str(names[0]).lower()) if len(names) == 1 else None

    @staticmethod
    def _constant(node: Any, t: Any) -> Any:
        """A number or text literal as a scalar of column type ``t`` when it is one
        exactly (an integer column and an integer; a double column and a number; a text
        column and a text), else None."""
        import pyarrow as pa

        if not isinstance(node, dict) or node.get("type") != "VALUE_CONSTANT":
            return None
        literal = node.get("literal") or {}
        kind, text = literal.get("kind"), str(literal.get("text"))
        try:
            if kind == "INTEGER" and (pa.types.is_integer(t) or pa.types.is_float64(t)):
                return pa.scalar(int(text) if pa.types.is_integer(t) else float(int(text)), t)
            if kind == "NUMERIC" and pa.types.is_float64(t):
                return pa.scalar(float(text), t)
            if kind == "STRING" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
                return pa.scalar(text, t)
        except (TypeError, ValueError, OverflowError, pa.ArrowException):
            return None
        return None


def _fold(terms: list[Any], join: Any) -> Any:
    if not terms:
        return None
    out = terms[0]
    for term in terms[1:]:
        out = join(out, term)
    return out

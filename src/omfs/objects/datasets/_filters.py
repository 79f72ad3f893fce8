"""Row filters for ``datasets.get``: DNF tuples and omega|ml-style keywords, both turned into
one pyarrow expression that the Parquet reader pushes down to row groups."""

from __future__ import annotations

from typing import Any

from omfs.errors import InvalidFilterError
from omfs.objects.datasets.where import WHERE_OPERATORS, as_where

__all__ = ["OPERATORS", "all_of", "build_filter"]

#: keyword suffix -> what it means; ``a=1`` alone means ``a__eq=1``
OPERATORS = {
    "eq": "equal to",
    "ne": "not equal to",
    "lt": "less than",
    "lte": "less than or equal to",
    "le": "less than or equal to",
    "gt": "greater than",
    "gte": "greater than or equal to",
    "ge": "greater than or equal to",
    "in": "one of a list",
    "nin": "none of a list",
    "not_in": "none of a list",
    "between": "between (lo, hi), both included",
    "isnull": "missing (True) or present (False)",
    "notnull": "present (True) or missing (False)",
    "contains": "a string containing",
    "startswith": "a string starting with",
    "endswith": "a string ending with",
}


def _coerce(key: str, column: str, value: Any, kind: Any) -> Any:
    """A filter value given as text (``"2024-03-01"``, ``"5"`` from the CLI) as the
    column's type (each of a list's); an error naming the column when it cannot be one."""
    import pyarrow as pa

    if kind is None or value is None:
        return value
    target = kind.value_type if pa.types.is_dictionary(kind) else kind
    many = isinstance(value, list | tuple | set | frozenset)
    try:
        if many:
            return type(value)(_cast_text(v, target) for v in value)
        return _cast_text(value, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        bad = exc.args[-1] if many else value
        said = f": column {column!r} is {target}, and {bad!r} cannot be read as {target}."
        if pa.types.is_temporal(target):
            said += " Write times as ISO 8601: 2024-03-25, or 2024-03-25T14:30:00."
        raise _refusal(key, value, said) from None


def _cast_text(value: Any, target: Any) -> Any:
    """``value`` as an Arrow scalar of type ``target`` when it is text (else as it is)."""
    import pyarrow as pa

    if not isinstance(value, str) or pa.types.is_string(target) or pa.types.is_large_string(target):
        return value
    if pa.types.is_boolean(target) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    try:
        return pa.scalar(value).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise type(exc)(str(exc), value) from None


def _keyword_expression(
    key: str,
    value: Any,
    columns: list[str],
    floats: frozenset[str] = frozenset(),
    types: dict[str, Any] | None = None,
) -> Any:
    column, op = key, "eq"
    if "__" in key:
        head, _, tail = key.rpartition("__")
        if tail in OPERATORS and key not in columns:
            column, op = head, tail
    if column not in columns:
        raise _refusal(
            key,
            value,
            f" names the column {column!r}, which the dataset does not have. Columns: {columns}.",
            hint="Operators: " + ", ".join(f"__{o}" for o in OPERATORS) + ".",
        )
    kind = (types or {}).get(column)
    expr = _operator_expression(key, column, op, value, kind, floats)
    _check_applies(expr, key, value, column, op, kind)
    return expr


def _check_applies(expr: Any, key: str, value: Any, column: str, op: str, kind: Any) -> None:
    """Refuse, naming the operator, the column's type and the operators that do apply, a
    filter whose operator has no meaning for that type (``contains`` on an int64 column), by
    evaluating it on no rows: the read itself would fail later with a bare Arrow error."""
    import pyarrow as pa

    if kind is None or _applies(expr, column, kind):
        return
    target = kind.value_type if pa.types.is_dictionary(kind) else kind
    works = [o for o in WHERE_OPERATORS if _probe(column, o, kind)]
    raise _refusal(
        key,
        value,
        f": the operator {op!r} ({OPERATORS[op]}) does not apply to column {column!r}, "
        f"which is {target}.",
        hint="Operators that do: " + ", ".join(f"__{o}" for o in works) + ".",
        cli_hint="--where operators that do: " + ", ".join(WHERE_OPERATORS[o] for o in works) + ".",
    )


def _refusal(
    key: str, value: Any, text: str, hint: str | None = None, cli_hint: str = ""
) -> InvalidFilterError:
    """The error of a keyword filter; on the command line it shows the ``--where``
    condition it came from."""
    error = InvalidFilterError(f"Filter {key}={value!r}{text}", hint=hint)
    error.cli_text = f"--where {as_where(key, value)!r}{text} {cli_hint}".strip()
    return error


def _applies(expr: Any, column: str, kind: Any) -> bool:
    """Whether Arrow can evaluate ``expr`` on a column of type ``kind``."""
    import pyarrow as pa

    try:
        pa.table({column: pa.array([], type=kind)}).filter(expr)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid):
        return False
    return True


def _probe(column: str, op: str, kind: Any) -> bool:
    """Whether ``op`` applies to a column of type ``kind`` (tried with a null value)."""
    import pyarrow as pa

    target = kind.value_type if pa.types.is_dictionary(kind) else kind
    value: Any = pa.scalar(None, type=target)
    if op in ("in", "nin"):
        value = [value]
    elif op in ("isnull", "notnull"):
        value = True
    elif op in ("contains", "startswith", "endswith"):
        value = "x"
    try:
        expr = _operator_expression(op, column, op, value, kind, frozenset())
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid):
        return False
    return _applies(expr, column, kind)


def _operator_expression(
    key: str, column: str, op: str, value: Any, kind: Any, floats: frozenset[str]
) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    field = pc.field(column)
    if op not in ("isnull", "notnull", "contains", "startswith", "endswith"):
        value = _coerce(key, column, value, kind)
    elif kind is not None and pa.types.is_dictionary(kind) and op != "isnull":
        field = field.cast(kind.value_type)  # string operators on a categorical's values
    if op == "eq":
        return field == value
    if op == "ne":
        return field != value
    if op == "lt":
        return field < value
    if op in ("lte", "le"):
        return field <= value
    if op == "gt":
        return field > value
    if op in ("gte", "ge"):
        return field >= value
    if op in ("in", "nin", "not_in"):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise InvalidFilterError(f"Filter {key}= takes a list of values, got {value!r}")
        expr = field.isin(list(value))
        return expr if op == "in" else ~expr
    if op == "between":
        try:
            lo, hi = value
        except (TypeError, ValueError):
            raise InvalidFilterError(
                f"Filter {key}= takes a pair (lo, hi), got {value!r}"
            ) from None
        return (field >= lo) & (field <= hi)
    if op in ("isnull", "notnull"):
        # is_null(nan_is_null=True) would be right, but pyarrow's Parquet row-group
        # pruning skips NaN rows for it; is_nan() it evaluates faithfully
        missing = field.is_null() | pc.is_nan(field) if column in floats else field.is_null()
        return missing if bool(value) == (op == "isnull") else ~missing
    if op == "contains":
        return pc.match_substring(field, str(value))
    if op == "startswith":
        return pc.starts_with(field, str(value))
    return pc.ends_with(field, str(value))


def build_filter(
    filters: Any,
    keywords: dict[str, Any],
    columns: list[str],
    floats: frozenset[str] = frozenset(),
    types: dict[str, Any] | None = None,
) -> Any:
    """Combine DNF ``filters`` (list of tuples, or list of lists of tuples) and keyword
    filters with AND; return a pyarrow Expression or None. ``floats`` names the floating
    point columns (where NaN counts as missing for ``__isnull``); ``types`` the columns'
    Arrow types, to which text values of keyword filters are cast."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    parts = []
    if filters is not None:
        if isinstance(filters, ds.Expression):
            parts.append(filters)
        else:
            try:
                parts.append(pq.filters_to_expression(filters))
            except (TypeError, ValueError) as exc:
                raise InvalidFilterError(
                    f"Invalid filters {filters!r}: {exc}. Use DNF tuples such as "
                    "[('a', '>', 1)] or [[('a', '>', 1)], [('b', '==', 'x')]]"
                ) from None
    for key, value in keywords.items():
        parts.append(_keyword_expression(key, value, columns, floats, types))
    return all_of(parts)


def all_of(expressions: list[Any]) -> Any:
    """The AND of pyarrow ``expressions``; None for none."""
    import functools
    import operator

    return functools.reduce(operator.and_, expressions) if expressions else None


_DNF_OPS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lte": "<=",
    "le": "<=",
    "gt": ">",
    "gte": ">=",
    "ge": ">=",
    "in": "in",
    "nin": "not in",
    "not_in": "not in",
}


def keywords_to_dnf(keywords: dict[str, Any], columns: list[str]) -> list[tuple[str, str, Any]]:
    """Keyword filters as DNF tuples, for readers that take only DNF (Dask's read_parquet)."""
    out: list[tuple[str, str, Any]] = []
    for key, value in keywords.items():
        _keyword_expression(key, value, columns)  # validates column and operator
        column, op = key, "eq"
        if "__" in key and key not in columns:
            column, _, op = key.rpartition("__")
        if op == "between":
            lo, hi = value
            out += [(column, ">=", lo), (column, "<=", hi)]
        elif op in _DNF_OPS:
            out.append((column, _DNF_OPS[op], list(value) if "in" in op else value))
        else:
            raise InvalidFilterError(
                f"Filter {key}= cannot be pushed into a lazy (Dask) read; use it with "
                "lazy=False, or filter the Dask DataFrame after reading"
            )
    return out

"""The text form of row filters, as ``om datasets get/head --where`` takes them: each
condition becomes one of the keyword filters of :mod:`._filters` (``qty>10`` is
``qty__gt="10"``), whose text values the store casts to the column's type.

``COLUMN OP VALUE`` with OP one of ``==`` (or ``=``) ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``~=``
(contains), ``^=`` (starts with), ``$=`` (ends with); ``COLUMN in (a,b)``, ``COLUMN not in
(a,b)``, ``COLUMN is null``, ``COLUMN is not null``. A column whose name has spaces,
brackets or operator characters is quoted in backticks, as pandas' ``query`` does:
```` `sepal length (cm)`>5 ````.
"""

from __future__ import annotations

import csv
import re
from typing import Any

from omfs.errors import InvalidFilterError

__all__ = ["WHERE_OPERATORS", "as_where", "parse_where", "show_column"]

#: keyword operator -> how ``--where`` writes it
WHERE_OPERATORS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "in": "in (a,b)",
    "nin": "not in (a,b)",
    "isnull": "is null",
    "notnull": "is not null",
    "contains": "~=",
    "startswith": "^=",
    "endswith": "$=",
}
_SYMBOLS = {"==": "eq", "=": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_SYMBOLS |= {"~=": "contains", "^=": "startswith", "$=": "endswith"}

_BARE = r"[^\s<>=!~^$`()]+"
_COLUMN = rf"\s*(?:`(?P<quoted>[^`]+)`|(?P<bare>{_BARE}))"
_IN = re.compile(rf"^{_COLUMN}\s+(?P<neg>not\s+)?in\s*\((?P<values>.*)\)\s*$", re.I | re.S)
_NULL = re.compile(rf"^{_COLUMN}\s+is\s+(?P<neg>not\s+)?null\s*$", re.I)
_COMPARE = re.compile(rf"^{_COLUMN}\s*(?P<op>==|=|!=|<=|>=|<|>|~=|\^=|\$=)\s*(?P<value>.*?)\s*$")
_FORM = (
    "use COLUMN OP VALUE with OP one of == != < <= > >= ~= (contains) ^= (starts with) "
    "$= (ends with), or COLUMN in (a,b), COLUMN not in (a,b), COLUMN is null, COLUMN is not "
    "null; quote a column with spaces or brackets in backticks: '`sepal length (cm)`>5'"
)


def show_column(column: str) -> str:
    """A column as ``--where`` writes it: bare, or in backticks."""
    return column if re.fullmatch(_BARE, column) else f"`{column}`"


def as_where(key: str, value: Any) -> str:
    """A keyword filter as ``--where`` writes it (``a__contains="1"`` is ``a~=1``)."""
    column, _, op = key.rpartition("__")
    if not column or op not in WHERE_OPERATORS:
        column, op = key, "eq"
    shown = show_column(column)
    if op in ("in", "nin"):
        listed = ",".join(map(str, value)) if isinstance(value, list | tuple | set) else value
        return f"{shown} {'not ' if op == 'nin' else ''}in ({listed})"
    if op in ("isnull", "notnull"):
        return f"{shown} {WHERE_OPERATORS[op]}"
    return f"{shown}{WHERE_OPERATORS[op]}{value}"


def parse_where(items: list[str] | None) -> dict[str, Any]:
    """``--where`` conditions as keyword filters (``{"qty__gt": "10"}``); all must hold."""
    out: dict[str, Any] = {}
    for item in items or []:
        column, op, value = parse_condition(item)
        key = f"{column}__{op}"
        if key in out:
            raise InvalidFilterError(_repeated(column, op, out[key], value))
        out[key] = value
    return out


def parse_condition(text: str) -> tuple[str, str, Any]:
    """``(column, keyword operator, value)`` of one condition; text values stay text."""
    match = _NULL.match(text)
    if match:
        return _column(match), "notnull" if match["neg"] else "isnull", True
    match = _IN.match(text)
    if match:
        values = _list(text, match["values"])
        return _column(match), "nin" if match["neg"] else "in", values
    match = _COMPARE.match(text)
    if not match or not match["value"]:
        raise InvalidFilterError(f"--where {text!r}: {_FORM}.")
    return _column(match), _SYMBOLS[match["op"]], _unquote(match["value"])


def _column(match: re.Match[str]) -> str:
    return match["quoted"] if match["quoted"] is not None else match["bare"]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _list(text: str, inner: str) -> list[str]:
    """The values of ``(a, b, "c,d")``: comma-separated, quotes optional."""
    values = next(csv.reader([inner], skipinitialspace=True), [])
    values = [_unquote(v) for v in values]
    if not values or any(v == "" for v in values):
        raise InvalidFilterError(
            f"--where {text!r}: give the values in brackets, separated by commas, "
            "e.g. 'clinic in (east,south)'."
        )
    return values


def _repeated(column: str, op: str, first: Any, second: Any) -> str:
    """Why a column and operator given twice is refused, and what to write instead."""
    shown = show_column(column)
    said = f"--where gives {shown} {WHERE_OPERATORS[op]} twice"
    if op in ("eq", "ne"):
        negation = "not " if op == "ne" else ""
        return (
            f"{said}, and all conditions must hold; for rows whose {column} is {negation}one "
            f"of them, write '{shown} {negation}in ({first},{second})'."
        )
    if op in ("lt", "lte", "gt", "gte"):
        return f"{said}; give the tighter bound once (all conditions must hold)."
    if op in ("in", "nin"):
        return f"{said}; give one list of values."
    if op in ("isnull", "notnull"):
        return f"{said}; give it once."
    return f"{said}; it takes one value per column, so give the more specific one."

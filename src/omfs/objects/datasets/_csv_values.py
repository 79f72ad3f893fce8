"""Why a CSV value could not be read as its column's type, in the user's terms: the line,
the column and the value, whether the type was given (``--dtype``, ``--parse-dates``) or read
from the rows before it, and what to give instead (``--decimal ,``, ``--date-format``, whose
suggested layout says when day and month could be either way round)."""

from __future__ import annotations

import re

from omfs.objects.datasets._tables import ImportOptions, TableFileError

__all__ = ["conversion_error", "date_advice"]

# pyarrow: "In CSV column #1: Row #2: CSV conversion error to double: invalid value 'x41'"
_CONVERSION = re.compile(
    r"CSV column #(\d+): Row #(\d+): CSV conversion error to (.+?): invalid value '(.*)'$", re.S
)
_DAY_MONTH = re.compile(
    r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?:([ T])\d{1,2}:\d{2}(:\d{2})?)?$"
)
_DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+$")


def conversion_error(
    path: str, text: str, names: list[str], options: ImportOptions
) -> TableFileError | None:
    """The error for pyarrow's conversion failure ``text`` (None for other errors)."""
    match = _CONVERSION.search(text)
    if match is None:
        return None
    index, line, target, value = int(match[1]), int(match[2]), match[3], match[4]
    column = names[index] if index < len(names) else f"#{index + 1}"
    said = f"{path}, line {line}: column {column!r} has {value!r}"
    if target.startswith(("timestamp", "date")) and (
        column in options.parse_dates or column in options.dtype
    ):
        return TableFileError(f"{said}, {date_advice(value, options)}")
    decimal = ""
    if options.decimal == "." and _DECIMAL_COMMA.match(value.strip()):
        decimal = "; for numbers written with a decimal comma, pass --decimal ,"
    if column in options.dtype:
        return TableFileError(
            f"{said}, which is not {target} (--dtype {column}={options.dtype[column]}){decimal}. "
            f"Fix the value, or give another type, e.g. --dtype {column}=string."
        )
    return TableFileError(
        f"{said}, which does not fit {target}, the type read from the rows before it"
        f"{decimal}. Give the column's type, e.g. --dtype {column}=string."
    )


def date_advice(value: str, options: ImportOptions) -> str:
    """What to say of a date ``value`` that did not parse, and the ``--date-format`` to give."""
    if options.date_format:
        return f"which does not match --date-format {options.date_format!r}."
    match = _DAY_MONTH.match(value.strip())
    if match is None:
        return (
            "which is not an ISO 8601 date (2024-03-01 or 2024-03-01 10:30:00); give its "
            "layout as a strptime format, e.g. --date-format '%d.%m.%Y %H:%M'."
        )
    first, sep, second, year, at, seconds = match.groups()
    clock = f"{at}%H:%M{':%S' if seconds else ''}" if at else ""
    y = "%Y" if len(year) == 4 else "%y"
    day_first, month_first = f"%d{sep}%m{sep}{y}{clock}", f"%m{sep}%d{sep}{y}{clock}"
    if int(first) <= 12 and int(second) <= 12:
        return (
            "a date whose day and month could be either way round, so it is not guessed: "
            f"give its layout, --date-format '{day_first}' (day first) or "
            f"--date-format '{month_first}' (month first)."
        )
    layout = day_first if int(first) > 12 else month_first
    return f"which is not an ISO 8601 date; give its layout: --date-format '{layout}'."

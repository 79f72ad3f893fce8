"""Task record files read, not trusted: each ``_tasks/ID.*.json`` is type-checked here.

Anyone who can write the context's root can write a record, and a task's value comes from
model code. A file that is not what omfs writes (not JSON, nested too deep, a field of the
wrong type, a pid or interval out of range) raises :class:`RecordError`, whose message
says what is wrong; :mod:`omfs.compute.records` turns it into one line naming the file.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_PID", "RecordError", "depth", "load_record"]

#: how deeply lists and dicts may nest in a record (a task's plain value included)
MAX_DEPTH = 64
#: the largest process id a ``started`` record may name (Linux's pid_max is 2**22)
MAX_PID = 2**31 - 1
_STRINGS = ("object", "action", "key", "bucket", "worker", "worker_name", "host", "error")
_FORMATS = ("json", "metadata", "parquet", "refused")


class RecordError(ValueError):
    """A record file that is not what omfs writes; the message says what is wrong."""


def load_record(name: str, data: bytes) -> dict[str, Any]:
    """The document of record file ``name`` (``submitted.json``, ``started.json``,
    ``finished.json``, ``cancelled.json``), checked; RecordError if it is not one."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # UnicodeDecodeError too
        raise RecordError(f"not JSON: {exc}") from None
    if depth(doc) > MAX_DEPTH:
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels")
    kind = name.removesuffix(".json")
    _check_common(doc, kind)
    if kind == "started":
        _check_started(doc)
    elif kind == "finished":
        _check_finished(doc)
    checked: dict[str, Any] = doc
    return checked


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            if deepest > MAX_DEPTH:
                return deepest
            todo.extend((v, level + 1) for v in item)
    return deepest


def _check_common(doc: Any, kind: str) -> None:
    if not isinstance(doc, dict):
        raise RecordError(f"a {type(doc).__name__}, not a {kind} record (a JSON object)")
    _time(doc, "at", required=kind != "submitted")
    for field in _STRINGS:
        if doc.get(field) is not None and not isinstance(doc[field], str):
            raise RecordError(f"{field!r} is a {type(doc[field]).__name__}, not text")
    route = doc.get("route")
    if route is not None and not (
        isinstance(route, dict) and all(_number(v) for v in route.values())
    ):
        raise RecordError(f"'route' is {route!r}, not resources such as {{'gpu': 1}}")
    if doc.get("writes") is not None and not isinstance(doc["writes"], bool):
        raise RecordError(f"'writes' is {doc['writes']!r}, not true or false")


def _check_started(doc: dict[str, Any]) -> None:
    pid = doc.get("pid")
    if pid is not None and not (type(pid) is int and 1 <= pid <= MAX_PID):
        raise RecordError(f"'pid' is {pid!r}, not a process id (1 to {MAX_PID})")
    every = doc.get("beat_every")
    if every is not None and not (_number(every) and 0 < every <= 86400):
        raise RecordError(f"'beat_every' is {every!r}, not seconds (above 0, at most a day)")
    _time(doc, "beat", required=False)


def _check_finished(doc: dict[str, Any]) -> None:
    if doc.get("status") not in ("succeeded", "failed", "cancelled"):
        raise RecordError(f"'status' is {doc.get('status')!r}, not succeeded, failed or cancelled")
    started = doc.get("started")
    if started is not None:
        try:
            _check_common(started, "started")
            _check_started(started)
        except RecordError as exc:
            raise RecordError(f"its 'started': {exc}") from None
    result = doc.get("result")
    if result is None:
        return
    if not isinstance(result, dict) or result.get("format") not in _FORMATS:
        raise RecordError(f"'result' is not a stored value (format one of {list(_FORMATS)})")
    fmt = result["format"]
    if fmt == "metadata" and not isinstance(result.get("value"), dict):
        raise RecordError("'result' holds no version's metadata")
    if fmt == "refused" and not isinstance(result.get("refused"), str):
        raise RecordError("'result' was refused without saying why")
    if fmt == "parquet":
        _check_parquet(result)


def _check_parquet(result: dict[str, Any]) -> None:
    if "inline" in result and not isinstance(result["inline"], str):
        raise RecordError("'result' has an inline Parquet value that is not text (base64)")
    if result.get("type") not in (None, "ndarray", "series", "frame"):
        raise RecordError(f"'result' has type {result.get('type')!r}, not ndarray/series/frame")
    if result.get("type") == "ndarray" and result.get("ndim") not in (1, 2):
        raise RecordError(f"'result' has ndim {result.get('ndim')!r}, not 1 or 2")


def _time(doc: dict[str, Any], field: str, *, required: bool) -> None:
    value = doc.get(field)
    if value is None and not required:
        return
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{field!r} is {value!r}, not a time (ISO 8601)") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

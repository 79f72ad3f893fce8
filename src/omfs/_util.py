"""Small shared helpers: one home for each.

- a bound on how deeply user input (the config file, ``--attr-json``) may nest;
- writing a local file whole (:func:`atomic_write`, :func:`atomic_path`);
- parsing ``KEY=VALUE`` items, durations (``"5min"``) and sizes (``"128MB"``).

On nesting:
Parsers and writers of TOML and JSON recurse once per level, so a value nested a few
thousand levels deep ends in a RecursionError, far from what the user typed. Settings and
attributes never need more than a handful of levels: anything deeper than
:data:`MAX_DEPTH` is refused with one line that says the limit.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from omfs.errors import ConfigError, UsageError

__all__ = [
    "MAX_DEPTH",
    "TooDeepError",
    "atomic_path",
    "atomic_write",
    "depth_problem",
    "parse_bounded",
    "parse_duration",
    "parse_kv",
    "parse_options",
    "parse_size",
    "pid_exists",
    "same_start",
    "seconds_setting",
]

MAX_DEPTH = 32

_T = TypeVar("_T")


class TooDeepError(ValueError):
    """Input nested more deeply than the limit (each caller turns it into its own error)."""


def depth_problem(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """Why ``value`` (dicts and lists inside each other) nests too deeply, or None.
    Iterative, so it cannot itself run out of stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return _too_deep(limit)
        stack.extend((child, depth + 1) for child in children)
    return None


def parse_bounded(parse: Callable[[str], _T], text: str, limit: int = MAX_DEPTH) -> _T:
    """``parse(text)``, raising TooDeepError (not RecursionError) when the result nests more
    than ``limit`` levels deep; the parser's own errors pass through."""
    try:
        value = parse(text)
    except RecursionError:
        raise TooDeepError(_too_deep(limit)) from None
    problem = depth_problem(value, limit)
    if problem:
        raise TooDeepError(problem)
    return value


def _too_deep(limit: int) -> str:
    return f"it nests tables or lists more than {limit} levels deep (the limit)"


# -- writing a local file whole ------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[Path]:
    """A fresh temporary path beside ``target`` to write; on leaving the block without an
    error it replaces ``target`` whole, else it is removed. No reader ever sees a half
    file. ``mode`` (e.g. ``0o600``) is set on the temporary file at its creation, before
    any byte is written, whatever the umask."""
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    if len(tmp.name.encode()) > 255:  # a long name: the temporary name must still fit
        tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    try:
        if mode is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            os.close(os.open(tmp, flags, mode))
            os.chmod(tmp, mode)
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(
    target: str | os.PathLike[str], data: bytes, *, mode: int | None = None, durable: bool = False
) -> None:
    """Write ``data`` to ``target`` whole or not at all (a temporary file, then a rename);
    ``durable`` flushes it to disk before the rename. See :func:`atomic_path`."""
    with atomic_path(target, mode=mode) as tmp, open(tmp, "wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())


# -- little parsers of user input ----------------------------------------------------------
def parse_kv(
    items: Iterable[str] | None, option: str, *, form: str = "KEY=VALUE"
) -> list[tuple[str, str]]:
    """``["k=v", ...]`` as ``[("k", "v"), ...]`` (a value may hold ``=``); a ValueError
    naming ``option`` and ``form`` for an item without a key or an ``=``."""
    pairs = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} takes {form}, got {item!r}")
        pairs.append((key, value))
    return pairs


def parse_options(items: Iterable[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` storage options as a dict: a JSON value where it parses as one
    (``anon=true``), dotted keys nested (``client_kwargs.endpoint_url=http://...``); a
    ValueError naming ``option`` for a malformed item."""
    options: dict[str, Any] = {}
    for key, value in parse_kv(items, option):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        target = options
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = parsed
    return options


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"5min"``, ``"1h"``, ``"30d"``, ``"2w"``, ``"0"``, seconds, or a timedelta.

    The one parser of durations (prune's ``older_than``, gc's ``grace``, their CLI
    options). A bare ``m`` is refused: it reads as a minute to some and a month to others.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise UsageError(f"Invalid duration {value!r}: it is negative")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):  # too long, or NaN
            raise UsageError(f"Invalid duration {value!r}: give finite seconds") from None
    match = _DURATION.fullmatch(str(value))
    unit = match.group(2).lower() if match else ""
    if match and unit == "m":
        number = match.group(1)
        raise UsageError(
            f"Duration {value!r} is ambiguous: write {number}min for {number} minute(s) or "
            f"{float(number) * 30:g}d for {number} month(s)"
        )
    if match and not unit and float(match.group(1)) == 0:
        return timedelta(0)  # nothing, in any unit
    if not match or unit not in _DURATION_UNITS:
        raise UsageError(
            f"Invalid duration {value!r}: use a number and a unit (s, min, h, d, w), "
            "e.g. '90s', '5min', '1h', '30d' or '2w'"
        )
    try:
        return timedelta(seconds=float(match.group(1)) * _DURATION_UNITS[unit])
    except OverflowError:
        raise UsageError(f"Invalid duration {value!r}: too long (at most 999999999d)") from None


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def seconds_setting(name: str, default: float) -> float:
    """The seconds environment variable ``name`` sets (``30``, ``90s``, ``2min``), else
    ``default``; ConfigError naming it for anything but a finite number above 0."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text) if _NUMBER.fullmatch(text) else parse_duration(text).total_seconds()
    except UsageError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"${name} is {text!r}, not a number of seconds above 0: give e.g. 30, 90s or "
            f"2min, or unset it for the default ({default:g} s)."
        )
    return seconds


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_size(text: str) -> int:
    """``128MB``, ``1GiB``, ``500000`` as a number of bytes; a ValueError otherwise."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _SIZE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"Invalid size {text!r}: use a number with an optional unit, e.g. 128MB or 1GiB"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def pid_exists(pid: int) -> bool:
    """True while a process ``pid`` runs on this machine (one of another user included)."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        import psutil

        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_start(seen: Any, recorded: Any) -> bool:
    """Whether two readings of one process's start time (seconds) agree. psutil adds the
    boot time of ``/proc/stat`` (whole seconds, which the kernel recomputes from the wall
    clock on each read) to a fixed tick count, so while the clock is being slewed two
    readings of the same process can differ by exactly one second: that is the same start."""
    numbers = all(isinstance(t, int | float) and not isinstance(t, bool) for t in (seen, recorded))
    if not numbers:
        return False
    apart = abs(float(seen) - float(recorded))
    return apart < 0.005 or abs(apart - 1.0) < 0.005

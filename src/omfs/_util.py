"""A bound on how deeply user input (the config file, ``--attr-json``) may nest.

Parsers and writers of TOML and JSON recurse once per level, so a value nested a few
thousand levels deep ends in a RecursionError, far from what the user typed. Settings and
attributes never need more than a handful of levels: anything deeper than
:data:`MAX_DEPTH` is refused with one line that says the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "TooDeepError", "depth_problem", "parse_bounded"]

MAX_DEPTH = 32


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


def parse_bounded(parse: Callable[[str], Any], text: str, limit: int = MAX_DEPTH) -> Any:
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

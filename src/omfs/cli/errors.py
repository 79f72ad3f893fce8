"""The one place that turns an error into what ``om`` says and its exit status.

A user's mistake or a refused input is an :class:`~omfs.errors.OmfsError` (which carries its
wording in the command line's terms and its exit status) or an ``OSError`` (a file, the
network): one line, no traceback. Anything else is a bug, and shows its traceback.
``OMFS_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from omfs.errors import OmfsError, UsageError

__all__ = [
    "USER_ERRORS",
    "OptionError",
    "debugging",
    "error_line",
    "exit_code",
    "interrupts_reported",
]

#: what ``om`` reports in one line; anything else is a bug
USER_ERRORS = (OmfsError, OSError)


def debugging() -> bool:
    """Whether ``OMFS_DEBUG`` asks for tracebacks."""
    return bool(os.environ.get("OMFS_DEBUG"))


def error_line(exc: BaseException) -> str:
    """An error as one line of text, a user error's in the command line's terms (its type
    when it has no message)."""
    if isinstance(exc, OmfsError):
        return exc.cli_message()
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    return " ".join(text.split()) or type(exc).__name__


def exit_code(exc: BaseException) -> int:
    """The exit status of ``om`` for a user error."""
    return exc.exit_code if isinstance(exc, OmfsError) else 1


@contextmanager
def interrupts_reported(fail: Callable[[str, int], Any]) -> Iterator[None]:
    """Ctrl-C ends ``om`` as ``om: error: interrupted`` and exit status 130 (in a real
    process; ``OMFS_DEBUG=1`` shows the traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        if debugging():
            raise
        fail("interrupted", 130)
    except SystemExit as exc:
        # Typer turns Ctrl-C into a silent exit 130: say so
        if exc.code == 130 and _caused_by_interrupt(exc):
            fail("interrupted", 130)
        raise


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, KeyboardInterrupt):
            return True
    return False


class OptionError(UsageError):
    """A command-line argument or option ``om`` refuses: exit status 2, as Click's own
    usage errors."""

    exit_code = 2

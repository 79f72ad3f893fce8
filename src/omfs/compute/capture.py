"""Per-run capture of a job's stdout and stderr, safe beside other threads.

``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process: on a threaded
Dask worker (or a scheduler running jobs in threads) another task's prints would land in
a job's log, and the job's in theirs. Instead, :func:`captured` installs once a proxy
as ``sys.stdout``/``sys.stderr`` that writes to the buffers of the run the current thread
(its context) is executing, and to the stream it replaced everywhere else. Threads a job
starts itself begin with a fresh context, so their output is not captured.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

__all__ = ["captured"]

_BUFFERS: ContextVar[tuple[io.StringIO, io.StringIO] | None] = ContextVar(
    "omfs_job_output", default=None
)
_INSTALL = threading.Lock()


class _RoutedStream(io.TextIOBase):
    """``sys.stdout`` (``index`` 0) or ``sys.stderr`` (1): the current run's buffer, else
    the stream it replaced."""

    def __init__(self, index: int, fallback: TextIO):
        self.index = index
        self.fallback = fallback

    def _target(self) -> Any:
        buffers = _BUFFERS.get()
        return self.fallback if buffers is None else buffers[self.index]

    def write(self, text: str) -> int:
        return int(self._target().write(text) or 0)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return _BUFFERS.get() is None and bool(self.fallback.isatty())

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.fallback, "encoding", "utf-8"))

    def __getattr__(self, name: str) -> Any:  # buffer, errors, mode ... of the real stream
        return getattr(self.fallback, name)


def _install() -> None:
    """Put the proxies in place (again, if something replaced them since)."""
    with _INSTALL:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(0, sys.stdout)
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(1, sys.stderr)


@contextlib.contextmanager
def captured(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """Within, what this thread prints to stdout and stderr goes to ``out`` and ``err``
    only; other threads print where they did."""
    _install()
    token = _BUFFERS.set((out, err))
    try:
        yield
    finally:
        _BUFFERS.reset(token)

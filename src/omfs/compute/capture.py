"""Per-run capture of a job's stdout and stderr, safe beside other threads.

``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process: on a threaded
Dask worker (or a scheduler running jobs in threads) another task's prints would land in
a job's log, and the job's in theirs. Instead, :func:`captured` installs once a proxy
as ``sys.stdout``/``sys.stderr`` that writes to the buffers of the run the current thread
(its context) is executing, and to the stream it replaced everywhere else. Threads a job
starts itself begin with a fresh context, so their output is not captured.

:class:`RunOutput` is where a run's output goes: two :class:`CappedFile` written as the
text comes (no buffer, so what a job printed is on disk even if its process dies at once),
each keeping at most :func:`output_limit` bytes (then one line says the rest was dropped).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

from omfs._util import parse_size
from omfs.errors import ConfigError

__all__ = ["OUTPUT_LIMIT", "CappedFile", "RunOutput", "captured", "output_limit"]

#: the most a run keeps of each of its stdout and stderr, by default (10 MiB)
OUTPUT_LIMIT = 10 * 2**20
OUTPUT_FILES = ("stdout.txt", "stderr.txt")


def output_limit() -> int:
    """The most a run keeps of each of stdout and stderr: ``$OMFS_JOB_OUTPUT_LIMIT``
    (``10MB``, ``500KB``, bytes) on the process that runs it, else :data:`OUTPUT_LIMIT`."""
    text = os.environ.get("OMFS_JOB_OUTPUT_LIMIT", "").strip()
    if not text:
        return OUTPUT_LIMIT
    try:
        return parse_size(text)
    except ValueError as exc:
        raise ConfigError(f"OMFS_JOB_OUTPUT_LIMIT: {exc}") from None


class CappedFile(io.TextIOBase):
    """A text stream written straight to the local file ``path`` (each write a system call:
    nothing waits in a buffer), keeping its first ``limit`` bytes; past them, one line says
    the output was truncated and the rest is dropped."""

    def __init__(self, path: str, limit: int):
        self.path = path
        self.limit = limit
        self.size = 0
        self.truncated = False
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            if self._fd is None or not data:
                return len(text)
            room = self.limit - self.size
            if len(data) > room:
                # cut at a character's boundary, then say so once
                self._put(data[: max(room, 0)].decode("utf-8", "ignore").encode())
                if not self.truncated:
                    self.truncated = True
                    note = (
                        f"\n[omfs: output truncated at {self.limit} bytes; the rest was dropped]\n"
                    )
                    os.write(self._fd, note.encode())
            else:
                self._put(data)
        return len(text)

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._fd is not None:
            written = os.write(self._fd, view)
            view = view[written:]
            self.size += written

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        super().close()


class RunOutput:
    """A run's ``stdout.txt`` and ``stderr.txt`` (``out``, ``err``), written as they come:
    in ``folder`` (the run's own folder, on a local context) or, with None, in a temporary
    folder whose files the caller uploads (:meth:`changed`) and then removes (:meth:`close`)."""

    def __init__(self, folder: str | None, limit: int | None = None):
        self.temporary = folder is None
        self.folder = tempfile.mkdtemp(prefix="omfs-run-") if folder is None else folder
        os.makedirs(self.folder, exist_ok=True)
        limit = output_limit() if limit is None else limit
        self.out = CappedFile(os.path.join(self.folder, OUTPUT_FILES[0]), limit)
        self.err = CappedFile(os.path.join(self.folder, OUTPUT_FILES[1]), limit)
        self._sent: dict[str, int] = {}

    def changed(self) -> dict[str, bytes]:
        """The files written to since the last call (name -> their whole content)."""
        found = {}
        for stream in (self.out, self.err):
            name = os.path.basename(stream.path)
            if self._sent.get(name) == os.stat(stream.path).st_size:
                continue
            with open(stream.path, "rb") as f:
                found[name] = f.read()
            self._sent[name] = len(found[name])
        return found

    def close(self) -> None:
        """Close both files (and remove the temporary folder)."""
        self.out.close()
        self.err.close()
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


_BUFFERS: ContextVar[tuple[io.TextIOBase, io.TextIOBase] | None] = ContextVar(
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
def captured(out: io.TextIOBase, err: io.TextIOBase) -> Iterator[None]:
    """Within, what this thread prints to stdout and stderr goes to ``out`` and ``err``
    only; other threads print where they did."""
    _install()
    token = _BUFFERS.set((out, err))
    try:
        yield
    finally:
        _BUFFERS.reset(token)

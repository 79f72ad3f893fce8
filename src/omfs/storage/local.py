"""The local-folder backend's file primitives: reads that never follow a symbolic link,
and writes that place a complete (by default fsynced) temporary file under its name whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

from omfs.errors import IntegrityError
from omfs.storage.streams import unique_name

__all__ = [
    "fsync_dir",
    "open_local",
    "place_local",
    "read_local",
    "size_error",
    "symlink_error",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def symlink_error(path: str) -> IntegrityError:
    """The error for a payload or log file that is a symbolic link (never followed)."""
    return IntegrityError(
        f"{path!r} is a symbolic link; omfs never follows links inside a context root (a "
        "payload or log file must be a regular file), so it was not read. Replace the link "
        "with the file itself, or run 'om fsck' to see what is affected."
    )


def size_error(path: str, size: int, recorded: int) -> IntegrityError:
    """The error for a payload whose size is not the one its log records."""
    return IntegrityError(
        f"{path!r} has {size} bytes, but the log records {recorded}: it was truncated or "
        "changed outside omfs, so it was not read. Restore it from a copy, or drop that "
        "version ('om fsck' lists every such problem)."
    )


def open_local(path: str) -> int:
    """A descriptor of the regular file at ``path``, read-only; a symlink is refused."""
    if not _NOFOLLOW and os.path.islink(path):  # no O_NOFOLLOW (Windows): check first
        raise symlink_error(path)
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise symlink_error(path) from None
        raise


def read_local(path: str, limit: int | None = None) -> bytes:
    """The bytes of the local file at ``path`` (at most ``limit``), without following a
    symlink."""
    with os.fdopen(open_local(path), "rb") as f:
        return f.read() if limit is None else f.read(limit)


def fsync_dir(folder: str) -> None:
    """Make the entries of ``folder`` (a new or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place_local(
    path: str, data: bytes, place: Callable[[str, str], None], durable: bool = True
) -> None:
    """Write ``data`` to a temporary file beside ``path``, then ``place`` it there whole.

    The temporary name starts with a dot, so no listing of omfs ever shows it. ``durable``
    fsyncs the file before placing it and the folder after, so a power loss cannot leave
    a placed name with missing content.
    """
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.{unique_name('.tmp')}")
    if len(os.path.basename(tmp).encode()) > 255:  # a long name's index marker
        tmp = os.path.join(folder, f".{unique_name('.tmp')}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        place(tmp, path)
        if durable:
            fsync_dir(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

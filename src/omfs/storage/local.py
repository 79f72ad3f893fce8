"""The local-folder backend's file primitives: reads that never follow a symbolic link,
and writes that place a complete (by default fsynced) temporary file under its name whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable

from omfs.errors import IntegrityError
from omfs.storage.streams import unique_name

__all__ = [
    "fsync_dir",
    "open_local",
    "place_local",
    "read_local",
    "refuse_links",
    "size_error",
    "symlink_error",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def symlink_error(path: str) -> IntegrityError:
    """The error for a file or folder below a root that is a symbolic link (never followed)."""
    return IntegrityError(
        f"{path!r} is a symbolic link; omfs never follows links inside a context root (its "
        "payloads, logs and their folders must be regular files and folders), so it was "
        "neither read nor written through. Replace the link with the file or folder itself, "
        "or run 'om fsck' to see what is affected."
    )


def refuse_links(root: str, path: str, whole: bool = False) -> str:
    """``path``, after checking that no folder between ``root`` and it (and with ``whole``,
    not ``path`` itself) is a symlink: IntegrityError naming the first that is. The root
    itself may be a link. One lstat per component (a file itself is opened O_NOFOLLOW)."""
    start = len(root.rstrip("/"))
    if not path.startswith(root) or path[start : start + 1] != "/":
        return path
    end = len(path) if whole else path.rfind("/")
    lstat, is_link = os.lstat, stat.S_ISLNK
    while start < end:
        start = path.find("/", start + 1)
        if start == -1 or start > end:
            start = end
        try:
            mode = lstat(path[:start]).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return path  # nothing below a missing folder to follow
        if is_link(mode):
            raise symlink_error(path[:start])
    return path


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

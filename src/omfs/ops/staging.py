"""Staging inside the target root: where an import's payloads land while they are checked.

Each import owns a folder of :data:`STAGING` (a folder listings, sync and fsck never look
at); a payload is placed under its final name only once checked, never over a file the
target has. The folder is removed at the end; what a killed import left there is removed by
the next import or by ``gc`` (:func:`clean_staging`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any

from omfs._util import same_start
from omfs.ops.bundle_read import Refused

if TYPE_CHECKING:
    from omfs.ops.bundle_read import Bundle, Member
    from omfs.storage import Storage

__all__ = ["STAGING", "Staging", "clean_staging", "put_if_absent"]

#: The folder of the target root where imports stage payloads (hidden from every listing).
STAGING = ".omfs-import"
_OWNER = "_owner.json"
#: Leftovers of an import on another machine are removed once untouched for this long.
_FOREIGN_STAGING_AGE = 24 * 3600


def _process_started(pid: int) -> float | None:
    """When process ``pid`` of this machine started (None: no such process), to tell it
    from a later process that reuses its id."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _owner_suffix() -> str:
    """The owner in the folder's name too (``-p<pid>-t<start ms>@<host>``): an import
    killed while it wrote its owner record left no record, only the name."""
    started = _process_started(os.getpid())
    stamp = round(started * 1000) if started is not None else 0
    return f"-p{os.getpid()}-t{stamp}@{socket.gethostname()}"


def _owner_from_name(folder: str) -> dict[str, Any] | None:
    """The owner a folder's name gives (:func:`_owner_suffix`), or None."""
    match = re.search(r"-p(\d+)-t(\d+)@([A-Za-z0-9.\-]+)$", folder)
    if match is None:
        return None
    pid, stamp, host = match.groups()
    return {"host": host, "pid": int(pid), "started": int(stamp) / 1000}


class Staging:
    """A folder of the target root, owned by this process, where payloads land while they
    are checked; each is then placed under its final name, never over an existing file."""

    def __init__(self, storage: Storage, enabled: bool = True):
        from omfs.storage import unique_name

        self.storage = storage
        self.enabled = enabled
        self.folder = f"{STAGING}/{unique_name()}{_owner_suffix()}"
        self.started = False
        self.count = 0

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.storage.delete_tree(self.folder)

    def _start(self) -> None:
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _process_started(os.getpid()),
        }
        self.storage.write_bytes(f"{self.folder}/{_OWNER}", json.dumps(owner).encode())
        self.started = True

    def stage(self, bundle: Bundle, member: Member, sha: str | None) -> str:
        """Stream ``member`` into the staging folder, checking it against the manifest and
        ``sha`` (what the log records); the staged key."""
        if not self.started:
            self._start()
        self.count += 1
        staged = f"{self.folder}/{self.count}"
        digest = hashlib.sha256()
        kwargs = {} if self.storage.is_local else {"block_size": 5 * 2**20}
        with self.storage.open(staged, "wb", **kwargs) as out:
            for chunk in bundle.chunks(member):
                digest.update(chunk)
                out.write(chunk)
        if sha is not None and digest.hexdigest() != sha:
            raise Refused(
                f"the member {member.path} of {bundle.where} does not match the sha256 its log "
                "records"
            )
        return staged


def put_if_absent(storage: Storage, staged: str, key: str) -> None:
    """Give the staged file the name ``key``, unless a file has it: a payload in the target
    is never overwritten (a local hard link fails if the name exists)."""
    if storage.is_local:
        from omfs.storage import fsync_dir

        path = storage.local(storage.path(key))  # never through a linked folder
        if storage.durable:
            fd = os.open(storage.path(staged), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(storage.path(staged), path)
            if storage.durable:
                fsync_dir(os.path.dirname(path))
        return
    if not storage.exists(key):
        storage.copy([staged], storage, [key])


def clean_staging(storage: Storage, older_than: float | None = None) -> list[str]:
    """Remove what killed imports left in the staging folder of ``storage``: folders whose
    owner (a process of this machine) is gone, and folders untouched since ``older_than``
    (seconds since the epoch; default a day ago). Returns the folders removed."""
    cutoff = time.time() - _FOREIGN_STAGING_AGE if older_than is None else older_than
    host = socket.gethostname()
    removed = []
    for folder in storage.list_dirs(STAGING):
        key = f"{STAGING}/{folder}"
        try:
            owner = json.loads(storage.read_bytes(f"{key}/{_OWNER}"))
        except (FileNotFoundError, ValueError):
            owner = None
        if not isinstance(owner, dict):
            owner = _owner_from_name(folder)
        if isinstance(owner, dict) and owner.get("host") == host:
            pid = owner.get("pid")
            alive = type(pid) is int and same_start(_process_started(pid), owner.get("started"))
            stale = not alive
        else:
            newest = max((m for _, _, m in storage.walk(key)), default=0.0)
            stale = newest <= cutoff
        if stale:
            storage.delete_tree(key)
            removed.append(key)
    return removed

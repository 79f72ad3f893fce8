"""Write leases: what keeps gc off the files of a write that is still running.

A write puts its payload files first and commits last, so until the commit its files are
referenced by nothing and look like garbage. Age alone cannot tell them apart from the
leftovers of a killed write: a put can stream for hours. So every writer holds a *lease*
for the object it writes, an empty file ``{bucket}/{store}/_leases/{name}@{id}``:

1. The writer creates its lease before it writes any file, rewrites it every
   :data:`LEASE_REFRESH` seconds from a background thread while it works, and deletes it
   after its commit (or failure). A short put costs two requests more: create and delete.
2. gc measures *now* on the storage's own clock (the modification time of a file it
   writes), lists every file, then lists the leases, then reads each object's log. A lease
   modified less than :data:`LEASE_TTL` ago (storage clock, whatever gc's grace) is live;
   gc deletes nothing of an object with a live lease, and says so.
3. Just before its commit the writer checks that its lease never lapsed: every refresh
   landed less than ``LEASE_TTL / 2`` after the previous one (measured on the writer's
   monotonic clock from the previous request's start to the next one's end, an upper
   bound of the gap between their storage times), and the last one less than
   ``LEASE_TTL / 2`` ago (else it refreshes now). A writer that was paused longer (a
   suspended laptop, a stopped process) refuses to commit: gc may have judged its lease
   dead and removed its files; nothing becomes visible and the write can be run again.

Why no interleaving loses a payload: gc deletes a file only if it was older than the grace
when gc listed it, so it was written before the listing, by a writer whose lease existed
before that file. When gc lists the leases (after the files), that writer either still
holds a live lease (gc skips the object: step 3 guarantees a lease that gc could see as
dead is never followed by a commit), or has finished: committed, then deleted its lease,
so the log gc reads afterwards references the file, or failed, and the file is garbage.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from omfs.errors import CommitConflictError
from omfs.storage import Storage, unique_name

__all__ = [
    "GRACE_FLOOR",
    "LEASE_REFRESH",
    "LEASE_TTL",
    "Lease",
    "check_held",
    "holding",
    "lease_folder",
    "scope",
    "take",
]

#: A lease not rewritten for this long (storage clock) belongs to a writer that stopped.
LEASE_TTL = 600.0
#: How often a writer rewrites its lease.
LEASE_REFRESH = 60.0
#: The shortest gc grace accepted without ``force=True``.
GRACE_FLOOR = 600.0

_scopes: ContextVar[contextlib.ExitStack | None] = ContextVar("omfs_lease_scope", default=None)
_held: ContextVar[dict[tuple[str, str, str, str], Lease] | None] = ContextVar(
    "omfs_leases", default=None
)


def lease_folder(bucket: str, kind: str) -> str:
    return f"{bucket}/{kind}/_leases"


#: Longest object-name part of a lease file name, in bytes (the file name adds ``@`` and a
#: 32-character id, and a local write a temporary name: all must stay under 255 bytes).
_STEM_BYTES = 160


def lease_stem(name: str) -> str:
    """What a lease file of object ``name`` starts with: the name with ``/`` as ``~``, or for
    a name too long to fit in a file name, ``#`` and its sha256 (a name may have 255 bytes)."""
    stem = name.replace("/", "~")
    if len(stem.encode()) <= _STEM_BYTES:
        return stem
    return "#" + hashlib.sha256(name.encode()).hexdigest()


def lease_owner(filename: str) -> str:
    """The :func:`lease_stem` a lease file ``{stem}@{id}`` is for."""
    return filename.rsplit("@", 1)[0]


def _clock() -> float:
    return time.monotonic()


class Lease:
    """One writer's lease on one object (see the module doc)."""

    def __init__(self, storage: Storage, bucket: str, kind: str, name: str, where: str):
        self.storage = storage
        self.key = f"{lease_folder(bucket, kind)}/{lease_stem(name)}@{unique_name()}"
        self.where = where
        self.lapsed = False
        self._last_sent = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Rewrite the lease; a gap since the previous one too long for gc marks it lapsed."""
        sent = _clock()
        self.storage.write_bytes(self.key, b"")
        done = _clock()
        with self._lock:
            if self._last_sent and done - self._last_sent >= LEASE_TTL / 2:
                self.lapsed = True
            self._last_sent = max(self._last_sent, sent)

    def _run(self) -> None:
        while not self._stop.wait(LEASE_REFRESH):
            with contextlib.suppress(Exception):  # a failed refresh shows as a gap
                self.refresh()

    def check(self) -> None:
        """Raise CommitConflictError unless the lease has been live all along, so that a
        commit made now cannot reference a file that gc removed."""
        with self._lock:
            stale = _clock() - self._last_sent >= LEASE_TTL / 2
        if stale and not self.lapsed:
            self.refresh()
        if self.lapsed:
            raise CommitConflictError(
                f"This write to {self.where} was paused for longer than "
                f"{LEASE_TTL / 2:g} s (its gc lease lapsed), so 'om gc' may have removed "
                "files it wrote; nothing of it became visible. Write again."
            )

    def __enter__(self) -> Lease:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="omfs-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(Exception):  # a leftover lease only delays gc a while
            self.storage.delete([self.key])


@contextlib.contextmanager
def holding(storage: Storage, bucket: str, kind: str, name: str, where: str) -> Iterator[Lease]:
    """Hold a lease on ``name`` for the block; commits inside it check it (:func:`held`).
    Nested blocks on the same object share the outer lease."""
    ident = (storage.url, bucket, kind, name)
    current = _held.get() or {}
    if ident in current:
        yield current[ident]
        return
    with Lease(storage, bucket, kind, name, where) as lease:
        token = _held.set({**current, ident: lease})
        try:
            yield lease
        finally:
            _held.reset(token)


def held(storage: Storage, bucket: str, kind: str, name: str) -> Lease | None:
    """The lease this thread holds on ``name``, if any."""
    return (_held.get() or {}).get((storage.url, bucket, kind, name))


def check_held(storage: Storage, bucket: str, kind: str, name: str) -> None:
    """Before a commit: refuse it if this thread's lease on ``name`` lapsed (see
    :meth:`Lease.check`); nothing to check without a lease."""
    lease = held(storage, bucket, kind, name)
    if lease is not None:
        lease.check()


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """A block whose leases taken with :func:`take` are held until it ends."""
    with contextlib.ExitStack() as stack:
        token = _scopes.set(stack)
        try:
            yield
        finally:
            _scopes.reset(token)


def take(storage: Storage, bucket: str, kind: str, name: str, where: str) -> Lease:
    """Hold a lease on ``name`` until the enclosing :func:`scope` ends. For writers that
    know only midway that they will write (sync, import): an object left unchanged costs
    no request."""
    stack = _scopes.get()
    if stack is None:
        raise RuntimeError("omfs.objects.lease.take() runs inside a lease scope()")
    current = held(storage, bucket, kind, name)
    if current is not None:
        return current
    return stack.enter_context(holding(storage, bucket, kind, name, where))

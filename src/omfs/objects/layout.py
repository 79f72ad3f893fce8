"""Every storage key of a versioned object, built and parsed in one place.

Layout of one object ``name`` of store ``datasets`` or ``models`` in ``bucket``::

    {bucket}/{store}/{name}/_log/00000000000000000007.json             commit 7
    {bucket}/{store}/{name}/_log/00000000000000000005.checkpoint.json  the state at commit 5
    {bucket}/{store}/{name}/_log/_last.json          hint: the newest commit and checkpoint
    {bucket}/{store}/{name}/_log/s-<sha256[:32]>.schema   a dataset schema, named by content
    {bucket}/{store}/{name}/_log/_adopt.json         the journal of a rebase in progress
    {bucket}/{store}/{name}/_log/_dropping           intent of a drop that hid the object
    {bucket}/{store}/{name}/_data/<32 hex>.<ext>     payload files
    {bucket}/{store}/{name}/_versions/v000001.json   format 1 (omfs 0.1) sidecars
    {bucket}/{store}/_index/{name, '/' as '~'}       empty marker: list() is one listing
    {bucket}/{store}/_leases/{name, '/' as '~'}@<id> gc leases (see omfs.objects.lease)

It also says which log files are kept: a checkpoint every :data:`CHECKPOINT_INTERVAL`
commits, the :data:`KEEP_CHECKPOINTS` newest of them (a reader may hold a hint to the older).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ADOPT_FILE",
    "CHECKPOINT_INTERVAL",
    "COLLECT_OP",
    "HINT_FILE",
    "KEEP_CHECKPOINTS",
    "ObjectKey",
    "ObjectPaths",
    "checkpoint_file",
    "checkpoint_seq",
    "commit_file",
    "index_folder",
    "keeps_checkpoint",
    "kept_checkpoints",
    "parse_key",
    "superseded_checkpoint",
]

#: A full checkpoint is written after every this many commits; readers of the full state
#: replay at most this many commits after the newest checkpoint.
CHECKPOINT_INTERVAL = 5
#: How many of the newest checkpoints are kept (readers may hold a hint to the older one).
KEEP_CHECKPOINTS = 2
_SEQ_WIDTH = 20
#: The hint naming the newest commit and checkpoint.
HINT_FILE = "_last.json"
#: The journal of a rebase switching an object's log to another history.
ADOPT_FILE = "_adopt.json"
#: The op of the tombstone gc commits on a dropped object before it deletes its files: a
#: restore racing it then loses its commit (see ``restore``), never finds files gone.
COLLECT_OP = "gc-collect"
_DROPPING_FILE = "_dropping"
_CHECKPOINT = re.compile(rf"(\d{{{_SEQ_WIDTH}}})\.checkpoint\.json")
_FOLDERS = ("_log", "_data", "_versions")


def commit_file(seq: int) -> str:
    """The file name of commit ``seq`` under ``_log/``: ``00000000000000000007.json``."""
    return f"{seq:0{_SEQ_WIDTH}d}.json"


def checkpoint_file(seq: int) -> str:
    """The file name of the checkpoint of commit ``seq`` under ``_log/``."""
    return f"{seq:0{_SEQ_WIDTH}d}.checkpoint.json"


def checkpoint_seq(filename: str) -> int | None:
    """The commit a checkpoint file name is of, or None for another file."""
    match = _CHECKPOINT.fullmatch(filename)
    return int(match.group(1)) if match else None


def kept_checkpoints(seq: int, base: int = 0) -> list[int]:
    """The checkpoints an object whose newest commit is ``seq`` keeps (none at or before
    ``base``, the commit that last deleted it), newest first.

    >>> kept_checkpoints(12)
    [10, 5]
    """
    newest = seq - seq % CHECKPOINT_INTERVAL
    found = (newest - i * CHECKPOINT_INTERVAL for i in range(KEEP_CHECKPOINTS))
    return [s for s in found if s > base]


def keeps_checkpoint(checkpoint: int, newest: int) -> bool:
    """True when the checkpoint of commit ``checkpoint`` is among the kept ones of a log
    whose newest commit is ``newest`` (what sync and bundles copy)."""
    return checkpoint > newest - KEEP_CHECKPOINTS * CHECKPOINT_INTERVAL


def superseded_checkpoint(written: int) -> int | None:
    """The checkpoint that stops being kept when the checkpoint of ``written`` appears."""
    older = written - KEEP_CHECKPOINTS * CHECKPOINT_INTERVAL
    return older if older > 0 else None


def index_folder(bucket: str, store: str) -> str:
    """The folder of a store's index markers (one empty file per object)."""
    return f"{bucket}/{store}/_index"


@dataclass(frozen=True)
class ObjectPaths:
    """The keys of one object. ``ObjectPaths("b", "datasets", "sales/q1").data_key("x.bin")``
    is ``"b/datasets/sales/q1/_data/x.bin"``."""

    bucket: str
    store: str
    name: str

    @property
    def prefix(self) -> str:
        """``{bucket}/{store}/{name}``: the folder of everything the object holds."""
        return f"{self.bucket}/{self.store}/{self.name}"

    @property
    def log_folder(self) -> str:
        return f"{self.prefix}/_log"

    @property
    def data_folder(self) -> str:
        return f"{self.prefix}/_data"

    @property
    def legacy_folder(self) -> str:
        """The format-1 sidecars (``_versions/``)."""
        return f"{self.prefix}/_versions"

    def log_key(self, filename: str) -> str:
        return f"{self.log_folder}/{filename}"

    def data_key(self, filename: str) -> str:
        return f"{self.data_folder}/{filename}"

    def legacy_key(self, version: int) -> str:
        return f"{self.legacy_folder}/v{version:06d}.json"

    @property
    def hint_key(self) -> str:
        return self.log_key(HINT_FILE)

    def schema_key(self, schema_id: str) -> str:
        return self.log_key(f"s-{schema_id}.schema")

    @property
    def adopt_key(self) -> str:
        return self.log_key(ADOPT_FILE)

    @property
    def dropping_key(self) -> str:
        return self.log_key(_DROPPING_FILE)

    @property
    def index_key(self) -> str:
        return f"{index_folder(self.bucket, self.store)}/{self.name.replace('/', '~')}"


@dataclass(frozen=True)
class ObjectKey:
    """A key of an object's folder, taken apart: ``folder`` is ``_log``, ``_data`` or
    ``_versions``, ``filename`` the file in it."""

    paths: ObjectPaths
    folder: str
    filename: str


def parse_key(key: str) -> ObjectKey | None:
    """``{bucket}/{store}/{name}/{folder}/{filename}`` taken apart (``name`` may hold
    slashes), or None for a key outside an object's folders (index, leases, …).

    >>> parse_key("b/datasets/sales/q1/_data/x.bin").paths.name
    'sales/q1'
    """
    parts = key.strip("/").split("/")
    if len(parts) < 5 or parts[-2] not in _FOLDERS:
        return None
    bucket, store, *name, folder, filename = parts
    return ObjectKey(ObjectPaths(bucket, store, "/".join(name)), folder, filename)

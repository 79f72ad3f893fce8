"""The versioned-object protocol, reading side: keys, the hooks a store defines, the state
of an object, selecting a version and its metadata.

Layout and log: :mod:`omfs.objects.layout` and :mod:`omfs.objects.log`. Readers follow the
log only, and see an object only while its index marker exists, so a crash at any point
leaves the previous state readable. Writing (commits), tags, drop/restore/prune and the
format-1 layout build on this class: :mod:`omfs.objects.versioned` assembles them.
"""

from __future__ import annotations

import builtins
import fnmatch
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from omfs.errors import IntegrityError, NotFoundError, UsageError
from omfs.names import check_bucket, check_name, split_selector
from omfs.objects.buckets import bucket_problem
from omfs.objects.layout import ObjectPaths, index_folder
from omfs.objects.log import ObjectLog
from omfs.objects.metadata import Metadata
from omfs.objects.records import State, VersionRecord
from omfs.objects.times import at_or_before, parse_time, tags_at
from omfs.storage import Storage

__all__ = ["ADOPTING", "VersionedBase"]

#: The index marker's content while a rebase switches the log (``adopt``): read the journal.
ADOPTING = b"adopting"


class _NotFound(NotFoundError):
    """A NotFoundError whose message (it may list buckets) is made only when it is read."""

    __module__ = NotFoundError.__module__

    def __init__(self, message: Callable[[bool], str]):
        super().__init__()
        self._message = message
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._message(False)
            self.args = (self._text,)
        return self._text

    def cli_message(self) -> str:
        return " ".join(self._message(True).split())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_found_error, (str(self), self.cli_message()))


_NotFound.__name__ = _NotFound.__qualname__ = "NotFoundError"  # as tracebacks show it


def _not_found_error(text: str, cli_text: str) -> NotFoundError:
    """A plain NotFoundError with both wordings of a _NotFound (what unpickling makes)."""
    error = NotFoundError(text)
    error.cli_text = cli_text
    return error


class VersionedBase:
    """The protocol every versioned store offers ops/ (promote, sync, gc, bundles): its
    objects' state, a version's record and metadata, and the hooks a store defines (its
    ``info`` check, payload files, export and import of a version).

    Example::

        name, rec, state = store.select("sales@prod")       # what a selector names
        meta = store.metadata_for(name, rec)                 # as users see it
        files = store.version_files(state, rec)              # the payload it reads
    """

    kind: str = ""  # the store: "datasets" or "models", set by subclasses
    noun: str = ""  # "Dataset" or "Model", for messages

    def __init__(self, storage: Storage, bucket: str, context: Any = None):
        self.storage = storage
        self.bucket = check_bucket(bucket)
        self._context = context  # the Omega this store belongs to (for promotion, runtime)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage.url!r}, bucket={self.bucket!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and self.storage == other.storage
            and self.bucket == other.bucket
        )

    def __hash__(self) -> int:
        return hash((type(self), self.storage.url, self.bucket))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.storage, self.bucket))

    # -- keys -----------------------------------------------------------------------------
    def paths(self, name: str) -> ObjectPaths:
        """Every key of object ``name`` (see :mod:`omfs.objects.layout`)."""
        return ObjectPaths(self.bucket, self.kind, name)

    def _prefix(self, name: str) -> str:
        return self.paths(name).prefix

    def data_key(self, name: str, filename: str) -> str:
        """The key of payload file ``filename`` of ``name``: ``{prefix}/_data/{filename}``."""
        return self.paths(name).data_key(filename)

    def _index_key(self, name: str) -> str:
        return self.paths(name).index_key

    def _adopt_key(self, name: str) -> str:
        return self.paths(name).adopt_key

    def _dropping_key(self, name: str) -> str:
        return self.paths(name).dropping_key

    def object_log(self, name: str) -> ObjectLog:
        """The commit log of ``name`` (reads and commits; see :class:`ObjectLog`)."""
        identity = {"store": self.kind, "bucket": self.bucket, "name": name}
        return ObjectLog(self.storage, self._prefix(name), identity, self.validate_info)

    def _where(self, name: str) -> str:
        noun = self.noun.lower()
        return f"{noun} {name!r} in bucket {self.bucket!r} of context {self.storage.url!r}"

    def _not_found(self, name: str, detail: str = "") -> NotFoundError:
        def message(cli: bool) -> str:
            problem = self.bucket_problem()
            text = (
                f"{self.noun} {name!r} does not exist{detail} in bucket {self.bucket!r} of "
                f"context {self.storage.url!r}"
            )
            if problem:
                return f"{text}: {problem}"
            if cli:
                return f"{text}. `om {self.kind} list` shows them."
            return f"{text}. list() shows the {self.kind} there."

        return _NotFound(message)

    def bucket_problem(self, creating: bool = False) -> str | None:
        """Why this bucket cannot be read (a typo in the root or bucket?), or None. A fresh
        context on the default bucket is fine; ``creating``: only a missing bucket in a
        context that has other buckets is a problem."""
        return bucket_problem(self.storage, self.bucket, creating)

    # -- what subclasses define ------------------------------------------------------------
    def validate_info(self, info: dict[str, Any], kind: str) -> None:
        """Raise (via omfs.objects.log helpers) when the ``info`` of a version of ``kind`` read from
        storage is not what this store writes. Called on every record before it is used."""
        raise NotImplementedError

    def _public_info(self, name: str, rec: VersionRecord) -> dict[str, Any]:
        """The store-specific items of a version's Metadata."""
        return dict(rec.info)

    def payload_sizes(self, meta: Metadata) -> dict[str, int]:
        """Each file under the object's ``_data/`` that version ``meta`` uses, with its size."""
        raise NotImplementedError

    def _legacy_info(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        """A format-1 sidecar's store-specific items as a format-2 ``info``."""
        raise NotImplementedError

    def _upgrade_record(self, name: str, rec: VersionRecord) -> VersionRecord:
        """Write what format 2 keeps outside the log for ``rec`` (schemas, payload sidecars)."""
        return rec

    def export_version(
        self, name: str, rec: VersionRecord, state: State
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """A version made self-contained, for a copy into another store (promote, sync).

        Args:
            name: the object. rec: the version. state: a state holding ``rec``.

        Returns:
            ``(info, files)``: the ``info`` to hand to the target's :meth:`import_info`
            (for datasets: every part and the schema inline), and each payload file to copy
            with its size.
        """
        raise NotImplementedError

    def import_info(
        self, name: str, kind: str, info: dict[str, Any], renamed: dict[str, str], created: str
    ) -> dict[str, Any]:
        """``info`` exported from another store (:meth:`export_version`), for a version of
        ``name`` here.

        Args:
            name: the object here. kind: the version's kind. info: the exported ``info``.
            renamed: each exported payload file name -> the name it was copied under.
            created: the version's creation time.

        Returns:
            The ``info`` of the version to commit here (what lives beside the log, such as
            a schema, is written by this call; a model's sidecar names the version, so
            :meth:`describe_version` writes it from the commit's change).
        """
        raise NotImplementedError

    def describe_version(self, name: str, rec: VersionRecord) -> None:
        """Write what describes version ``rec`` of ``name`` beside its payload (a model's
        sidecar), just before the commit that makes it a version; nothing by default.
        A writer calls it from its commit's change, so a retry rewrites it renumbered."""

    def own_files(self, rec: VersionRecord) -> list[str]:
        """The payload files that ``rec`` itself added (and, for models, their sidecars)."""
        raise NotImplementedError

    def version_files(self, state: State, rec: VersionRecord) -> list[str]:
        """Every payload file version ``rec`` reads (for datasets: its parents' parts too)."""
        return self.own_files(rec)

    def _legacy_state(self, name: str) -> State | None:
        """The state of ``name`` in the format-1 layout (omfs 0.1), or None when it has
        none. A store that reads that layout overrides this (:mod:`omfs.objects.legacy`)."""
        return None

    def _check_version(self, name: str, state: State, rec: VersionRecord) -> list[str]:
        """Problems of one live version's payload files (for fsck)."""
        raise NotImplementedError

    # -- reading the log --------------------------------------------------------------------
    def state(self, name: str, *, full: bool = False, reader: bool = True) -> State:
        """The log's state of ``name`` (what gc, sync and bundles inspect).

        For readers an object is visible only while its index marker exists too, so that
        ``list()``, ``exists()``, ``get()`` and ``versions()`` always agree (see
        :meth:`commit`); writers see the log as it is.

        Args:
            name: the object.
            full: every version record (else a head: the latest and tagged versions).
            reader: as readers see it (marker checked, a rebase's journal followed).

        Returns:
            The state; ``State()`` (``exists`` False) when there is no such object.
        """
        if reader:
            marker = self._marker(name)
            if marker is None:
                return State()
            if marker:  # a rebase is switching this log to another history: read that one
                adopted = self._adopted_state(name)
                if adopted is not None:
                    return adopted
        log = self.object_log(name)
        head = log.head()
        if head.seq == 0:
            legacy = self._legacy_state(name)
            if legacy is not None:
                return legacy
        return log.full(head) if full and not head.complete else head

    def is_listed(self, name: str) -> bool:
        """True while ``name``'s index marker exists (one small read)."""
        return self._marker(name) is not None

    def _marker(self, name: str) -> bytes | None:
        """The index marker's content (empty, or ``adopting`` while a rebase switches the
        log to another history), None when there is none."""
        try:
            return self.storage.read_bytes(self._index_key(name))
        except FileNotFoundError:
            return None

    def _adopted_state(self, name: str) -> State | None:
        """The complete state of the history a rebase is switching ``name`` to (from its
        journal), or None when there is no journal."""
        log = self.object_log(name)
        try:
            return log.load_parsed(
                self._adopt_key(name), lambda d: log.parse_checkpoint(d, d.get("checkpoint"))
            )
        except FileNotFoundError:
            return None

    def select(
        self,
        spec: str,
        version: int | str | None = None,
        *,
        full: bool = False,
        at: Any = None,
    ) -> tuple[str, VersionRecord, State]:
        """The name, version record and state that a selector names.

        Args:
            spec: ``name``, ``name@v3``, ``name@tag`` or ``name@latest``.
            version: a version number or tag (instead of the ``@`` part).
            full: return the complete state (else it may be a head).
            at: an ISO 8601 time or datetime: what the name or tag meant then.

        Returns:
            ``(name, record, state)``; NotFoundError naming what exists when there is none.

        Example::

            name, rec, state = store.select("sales@prod")
            store.version_files(state, rec)   # the payload files it reads
        """
        if at is not None:
            return self._select_at(spec, version, parse_time(at))
        name, selector = split_selector(spec)
        if version is not None:
            _, from_version = split_selector(f"{name}@{version}")
            if selector is not None and from_version != selector:
                raise UsageError(
                    f"{spec!r} selects a version and version={version!r} selects another; "
                    "give only one"
                )
            selector = from_version
        state = self.state(name)
        if not state.exists:
            detail = f" at version {selector}" if isinstance(selector, int) else ""
            raise self._not_found(name, detail)
        if selector is None:
            number = state.latest
        elif isinstance(selector, str):
            if selector not in state.tags:
                raise self._not_found(name, f" with tag {selector!r}")
            number = state.tags[selector]
        else:
            number = selector
        if (number not in state.records or full) and not state.complete:
            state = self.object_log(name).full(state)
        rec = state.records.get(number)  # type: ignore[arg-type]
        if rec is None:
            raise self._not_found(name, f" at version {number}")
        if rec.dropped is not None:
            raise self._not_found(name, f" at version {number} (it was dropped)")
        return name, rec, state

    def _select_at(
        self, spec: str, version: int | str | None, when: datetime
    ) -> tuple[str, VersionRecord, State]:
        name, selector = split_selector(spec)
        if version is not None:
            selector = split_selector(f"{name}@{version}")[1]
        state = self.state(name, full=True)
        if not state.exists:
            raise self._not_found(name)
        stamp = when.isoformat()
        if isinstance(selector, str):
            moves = [
                e for e in state.tag_log if e["tag"] == selector and at_or_before(e["at"], when)
            ]
            number = moves[-1]["v"] if moves else None
            if number is None:
                raise self._not_found(name, f" with tag {selector!r} at {stamp}")
        else:
            alive = [
                r.version
                for r in state.records.values()
                if at_or_before(r.created, when)
                and (r.dropped is None or not at_or_before(r.dropped, when))
            ]
            if selector is None:
                if not alive:
                    raise self._not_found(name, f" at {stamp} (it had no version yet)")
                number = max(alive)
            elif selector in alive:
                number = selector
            else:
                raise self._not_found(name, f" at version {selector} at {stamp}")
        rec = state.records.get(number)
        if rec is None or rec.dropped is not None:
            raise self._not_found(
                name,
                f" at version {number}, which {selector or 'it'} pointed at on {stamp} "
                "(that version was dropped since)",
            )
        return name, rec, state

    def metadata_for(
        self, name: str, rec: VersionRecord, tags: Mapping[str, int] | None = None
    ) -> Metadata:
        """The user-facing Metadata of version ``rec`` of ``name`` (what ``metadata()``,
        ``put()`` and ``versions()`` return). ``tags``: each tag -> the version it points at
        (a state's ``tags``; read from the log's head when not given)."""
        if tags is None:
            tags = self.state(name).tags
        return Metadata(
            name=name,
            bucket=self.bucket,
            store=self.kind,
            kind=rec.kind,
            version=rec.version,
            created=rec.created,
            attributes=dict(rec.attributes),
            tags=sorted(t for t, v in tags.items() if v == rec.version),
            put_tag=rec.tag,
            lineage=rec.lineage,
            context=self.storage.url,
            history=list(rec.history),
            info={"operation": rec.op, **self._public_info(name, rec)},
        )

    def _resolve(self, spec: str, version: int | str | None = None, at: Any = None) -> Metadata:
        """The metadata that ``spec`` selects (with the tags as they were ``at``, if given)."""
        name, rec, state = self.select(spec, version, at=at)
        tags = state.tags if at is None else tags_at(state.tag_log, parse_time(at))
        return self.metadata_for(name, rec, tags)

    # -- public reading API ----------------------------------------------------------------
    def list(self, pattern: str | None = None) -> list[str]:
        """Names in this bucket, sorted; ``pattern`` is a glob (``sales/*``, ``*2024*``).

        One listing of the bucket's index; a pattern with a literal start (``team1/*``)
        lists only names with that start where the storage can. A bucket that does not
        exist in a context that has others (a typo?) is a NotFoundError naming them; an
        empty or new context lists nothing.
        """
        names = self._names(pattern)
        if not names:
            problem = self.bucket_problem(creating=True)
            if problem:
                raise NotFoundError(f"Cannot list {self.kind}: {problem}")
        return names

    def _names(self, pattern: str | None = None) -> builtins.list[str]:
        literal = ""
        if pattern is not None:
            for c in pattern:
                if c in "*?[":
                    break
                literal += c
        found = self.storage.list_names(
            index_folder(self.bucket, self.kind), startswith=literal.replace("/", "~")
        )
        names = [f.replace("~", "/") for f in found if f[0] != "."]  # not temporary files
        if pattern is not None and pattern != literal + "*":  # 'team1/*': the prefix said it all
            names = fnmatch.filter(names, pattern)
        names.sort()
        return names

    def exists(self, name: str) -> bool:
        """True when ``name`` (or the version it selects) exists."""
        try:
            self.select(name)
        except NotFoundError:
            return False
        return True

    def metadata(self, name: str, *, version: int | str | None = None, at: Any = None) -> Metadata:
        """The metadata of the latest version, or of the one ``name@v3``, ``name@tag`` or
        ``version=`` selects; ``at=`` (ISO 8601; naive times are UTC) as it was selected at
        that time, with the tags of then."""
        return self._resolve(name, version, at)

    def versions(self, name: str, *, at: Any = None) -> builtins.list[Metadata]:
        """Every live version of ``name``, oldest first, each with the tags that point at it
        now; ``at=``: those live at that time (and still readable), with the tags of then."""
        name = check_name(name)
        state = self.state(name, full=True)
        live = state.live() if state.exists else []
        tags, detail = state.tags, ""
        if at is not None:
            when = parse_time(at)
            if live:
                detail = f" at {when.isoformat()} (it had no version yet)"
            live = [r for r in live if at_or_before(r.created, when)]
            tags = tags_at(state.tag_log, when)
        if not live:
            raise self._not_found(name, detail)
        return [self.metadata_for(name, rec, tags) for rec in live]

    # -- integrity ------------------------------------------------------------------------
    def _check_payload_present(self, name: str, version: int, filename: str) -> str:
        key = self.data_key(name, filename)
        if not self.storage.exists(key):
            raise self._missing_payload(name, version, filename)
        return key

    def _missing_payload(self, name: str, version: int, filename: str) -> IntegrityError:
        return IntegrityError(
            f"The payload {filename!r} of {self._where(name)} version {version} is missing. "
            "The log refers to a file that was deleted outside omfs; drop that version or "
            "restore the file ('om fsck' lists every such problem)."
        )

    def fsck(self, name: str) -> builtins.list[str]:
        """Problems with ``name``: its log, and every live version's payload files
        (present, of the recorded size and sha256). An empty list means all is well."""
        try:
            state = self.state(name, full=True)
        except (IntegrityError, OSError) as exc:
            return [str(exc)]
        problems: list[str] = []
        for rec in state.live() if state.exists else []:
            problems.extend(self._check_version(name, state, rec))
        return problems

"""Versioned objects, each with its own commit log: the store that datasets and models extend,
and the protocol that ops/ (promote, sync, gc, bundles) builds on.

The protocol, in the order an operation meets it (every method is documented where it is
defined):

- reading (:mod:`omfs.objects.base`): ``state(name, full=, reader=)`` (the log's state; what
  gc inspects), ``select(spec)`` (name, version record, state), ``metadata_for(name, rec)``,
  ``is_listed(name)``, ``object_log(name)``, ``data_key(name, file)``;
- payload (hooks each store defines): ``own_files(rec)`` (what a version added),
  ``version_files(state, rec)`` (all it reads), ``export_version(name, rec, state)`` and
  ``import_info(...)`` (a version made self-contained, and taken in elsewhere),
  ``appended_details(...)`` (datasets: the totals of an append, replayed by a rebase);
- writing (:mod:`omfs.objects.commits`): ``commit(name, change, retry=)``, ``lease(name)``,
  ``bury(name, state)``, ``adopt(name, journal)`` / ``finish_adopt(name)``.

Example (a copy of one version, as promote does it)::

    name, rec, state = source.select("sales@prod")
    info, files = source.export_version(name, rec, state)
    # ... copy ``files`` under new names into target's _data/ ...
    new_info = target.import_info(name, rec.kind, info, renamed, rec.created)
    target.commit(name, lambda s: Commit(op="promote", version=...), retry=True)

Tags (:mod:`omfs.objects.tags`), drop/restore/prune (:mod:`omfs.objects.lifecycle`) and the
format-1 layout of omfs 0.1 (:mod:`omfs.objects.legacy`) complete the user-facing store.
"""

from __future__ import annotations

from omfs.objects.base import ADOPTING
from omfs.objects.buckets import bucket_names, bucket_problem
from omfs.objects.commits import leased
from omfs.objects.layout import ADOPT_FILE
from omfs.objects.legacy import LegacyMixin
from omfs.objects.lifecycle import LifecycleMixin
from omfs.objects.tags import TagsMixin
from omfs.objects.times import parse_duration, parse_time

__all__ = [
    "ADOPTING",
    "ADOPT_FILE",
    "VersionedStore",
    "bucket_names",
    "bucket_problem",
    "leased",
    "parse_duration",
    "parse_time",
]


class VersionedStore(TagsMixin, LifecycleMixin, LegacyMixin):
    """Base of DatasetStore and ModelStore: naming, listing, versions, commits, tags, drop,
    restore, prune, and the format-1 layout."""

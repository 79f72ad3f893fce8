"""gc never removes what sync, rebase, import or restore are bringing in (issue 17, items 5
and 6, as attacked after they landed).

Each writer holds a gc lease on the object it writes for its whole copy-and-commit; the
races are forced by running gc at the worst moment from a callback or a patch, with a zero
grace (forced), so that every file gc lists is old enough to go.
"""

from __future__ import annotations

import pandas as pd
import pytest

import omfs
from omfs.errors import RestoreError
from omfs.objects.log import ObjectLog
from omfs.objects.versioned import VersionedStore
from omfs.ops import bundle_import, gc
from omfs.ops import rebase as rebasing
from omfs.ops.fsck import fsck


def frame(i):
    return pd.DataFrame({"x": [i]})


def rows(ctx, name="d"):
    store = ctx.datasets
    return [store.get(name, version=m.version)["x"].tolist() for m in store.versions(name)]


def collect(ctx):
    """What cron's gc does, with nothing kept for age: the names it skipped."""
    report = ctx.gc(grace=0, force=True)
    return [s["name"] for s in report["skipped"]]


@pytest.fixture
def target(shared_root):
    root, options = shared_root
    return omfs.setup(root, storage_options=options)


def test_gc_during_a_sync_leaves_what_it_copies(tmp_path, target):
    """t7: gc runs while sync copies the new payloads of five appends; sync's lease keeps
    gc off them, and every version of the target reads."""
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(frame(0), "d")
    omfs.sync(laptop, target)
    for i in range(1, 6):
        laptop.datasets.put(frame(i), "d", append=True)
    skipped = []

    def progress(_nbytes):
        if not skipped:  # the first copied file has landed; nothing is committed yet
            skipped.append(collect(target))

    report = omfs.sync(laptop, target, progress=progress)
    assert [r.action for r in report.objects] == ["copy"]
    assert skipped == [["d"]]
    assert rows(target) == rows(laptop)
    assert fsck(target) == []
    assert target.storage.list_names("omega/datasets/_leases") == []


def test_an_unchanged_sync_takes_no_lease(tmp_path, target, monkeypatch):
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(frame(0), "d")
    omfs.sync(laptop, target)
    from omfs.objects import lease

    monkeypatch.setattr(lease, "Lease", None)  # any lease taken would fail
    assert omfs.sync(laptop, target).unchanged == 1


def test_sync_adds_a_payload_the_target_lost_and_never_overwrites(tmp_path, target):
    """A target whose log names a payload it lacks (gc raced an older sync) is not
    "unchanged" for ever: fsck names the file, and the next sync copies it from the source,
    checked against the log; a damaged source copy is refused."""
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(frame(0), "d")
    laptop.datasets.put(frame(1), "d", append=True)
    omfs.sync(laptop, target)
    part = target.datasets.parts("d", version=2)[-1]["file"]
    key = f"omega/datasets/d/_data/{part}"
    target.storage.delete([key])
    assert any(part in p["problem"] for p in fsck(target))
    good = laptop.storage.read_bytes(key)
    laptop.storage.write_bytes(key, bytes(reversed(good)))  # same size, other bytes
    refused = omfs.sync(laptop, target).objects[0]
    assert refused.action == "refused" and part in refused.error
    assert not target.storage.exists(key)
    laptop.storage.write_bytes(key, good)
    assert omfs.sync(laptop, target, dry_run=True).objects[0].repaired == [part]
    assert not target.storage.exists(key)
    row = omfs.sync(laptop, target).objects[0]
    assert (row.action, row.repaired) == ("copy", [part])
    assert rows(target) == [[0], [0, 1]]
    assert fsck(target) == []
    assert omfs.sync(laptop, target).objects[0].action == "unchanged"


def test_gc_during_a_rebase_leaves_both_sides_whole(tmp_path, target, monkeypatch):
    """gc of the target while the rebased payloads are copied but not committed, and of the
    source while the target's files are copied to it before it adopts that history."""
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(frame(0), "d")
    omfs.sync(laptop, target)
    laptop.datasets.put(frame(1), "d", append=True)
    target.datasets.put(frame(2), "d", append=True)
    skipped = {}
    recommit, adopt = rebasing._recommit, VersionedStore.adopt

    def gc_target_first(*args):
        skipped.setdefault("target", collect(target))
        return recommit(*args)

    def gc_source_first(self, name, journal):
        skipped.setdefault("source", collect(laptop))
        return adopt(self, name, journal)

    monkeypatch.setattr(rebasing, "_recommit", gc_target_first)
    monkeypatch.setattr(VersionedStore, "adopt", gc_source_first)
    report = omfs.sync(laptop, target, rebase=True)
    assert [r.action for r in report.objects] == ["rebased"]
    assert skipped == {"target": ["d"], "source": ["d"]}
    assert rows(target) == rows(laptop) == [[0], [0, 2], [0, 2, 1]]
    assert fsck(target) == [] and fsck(laptop) == []


def test_gc_during_an_import_leaves_what_it_places(tmp_path, target, monkeypatch):
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(frame(0), "d")
    omfs.sync(laptop, target)
    laptop.datasets.put(frame(1), "d", append=True)
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["d"], path)
    skipped = []
    place = bundle_import._put_if_absent

    def place_then_gc(*args):
        place(*args)
        if not skipped:
            skipped.append(collect(target))

    monkeypatch.setattr(bundle_import, "_put_if_absent", place_then_gc)
    omfs.import_(path, target)
    assert skipped == [["d"]]
    assert rows(target) == [[0], [0, 1]]
    assert fsck(target) == []


# -- restore against gc: exactly one of the two wins ------------------------------------------
@pytest.fixture
def dropped(target):
    for i in range(3):
        target.datasets.put(frame(i), "d", append=i > 0)
    target.datasets.drop("d")
    return target


def test_gc_during_a_restore_leaves_it_alone(dropped, monkeypatch):
    """t6: gc runs just before the restore commits; the restore's lease keeps gc off."""
    skipped = []
    write = ObjectLog.write_checkpoint

    def gc_first(self, full):
        if not skipped:
            skipped.append(collect(dropped))
        return write(self, full)

    monkeypatch.setattr(ObjectLog, "write_checkpoint", gc_first)
    dropped.datasets.restore("d")
    assert skipped == [["d"]]
    assert rows(dropped) == [[0], [0, 1], [0, 1, 2]]
    assert fsck(dropped) == []


def test_a_gc_that_chose_before_the_restore_took_its_lease_wins(dropped, monkeypatch):
    """gc listed the leases before the restore took its lease, and the restore found every
    file: gc's own commit comes first, so the restore refuses instead of bringing back an
    object without payloads."""
    write = ObjectLog.write_checkpoint
    fired = []

    def gc_first(self, full):
        if not fired:
            fired.append(1)
            with monkeypatch.context() as m:
                m.setattr(gc, "_leased", lambda *a: set())  # it saw no lease
                assert collect(dropped) == []
        return write(self, full)

    monkeypatch.setattr(ObjectLog, "write_checkpoint", gc_first)
    with pytest.raises(RestoreError, match="gc already collected"):
        dropped.datasets.restore("d")
    assert not dropped.datasets.exists("d")
    assert dropped.storage.list_names("omega/datasets/d/_data") == []
    with pytest.raises(RestoreError, match="gc already collected"):
        dropped.datasets.restore("d")
    assert fsck(dropped) == []


def test_a_restore_that_commits_while_gc_runs_wins(dropped, monkeypatch):
    """The restore commits after gc read the log (and listed no lease): gc's own commit
    fails, so it deletes nothing of the object, which reads whole."""
    state = VersionedStore.state
    fired = []

    def restore_after_gc_read(self, name, **kwargs):
        found = state(self, name, **kwargs)
        if name == "d" and not kwargs.get("reader", True) and not fired:
            fired.append(1)
            self.restore("d")
        return found

    monkeypatch.setattr(VersionedStore, "state", restore_after_gc_read)
    skipped = collect(dropped)
    monkeypatch.setattr(VersionedStore, "state", state)
    assert fired and skipped == ["d"]
    assert rows(dropped) == [[0], [0, 1], [0, 1, 2]]
    assert fsck(dropped) == []

"""Rebase converges as git users expect, and a dropped object comes back (issue 17, items 3
and 6): after ``sync(a, b, rebase=True)`` both sides hold one history, no version is
applied twice, tag moves survive (a tag moved on both sides is a reported conflict); a
dropped object is restored with its history until gc collects it, and sync names it."""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest

import omfs
from omfs.errors import RestoreError
from omfs.ops import rebase as rebasing


@pytest.fixture(params=["local", "s3"])
def team(request, tmp_path):
    """The shared context: a local folder or an S3 (moto) root."""
    if request.param == "local":
        return omfs.setup(tmp_path / "team")
    options = request.getfixturevalue("s3_options")
    return omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)


def tree(ctx, bucket="omega"):
    """Every omfs file of a bucket (temporary files aside) and its bytes."""
    return {
        key.split("/", 1)[1]: ctx.storage.read_bytes(key)
        for key, _, _ in ctx.storage.inventory(bucket)
        if not key.rsplit("/", 1)[-1].startswith(".")
    }


def append(ctx, x, name="d"):
    ctx.datasets.put(pd.DataFrame({"x": [x]}), name, append=ctx.datasets.exists(name))


def rows(ctx, name="d"):
    return ctx.datasets.get(name)["x"].tolist()


def actions(report):
    return {r.name: r.action for r in report.objects}


def diverge(laptop, team):
    """Shared v1, v2 (prod -> v1); then the laptop appends 3 and moves prod to v2 (a version
    both share), a colleague appends 4."""
    append(laptop, 1)
    append(laptop, 2)
    laptop.datasets.tag("d@v1", "prod")
    assert omfs.sync(laptop, team).copied == 1
    append(laptop, 3)
    laptop.datasets.tag("d@v2", "prod")
    append(team, 4)


def test_push_rebase_converges_once_and_keeps_a_local_tag_move(tmp_path, team):
    laptop = omfs.setup(tmp_path / "laptop")
    diverge(laptop, team)
    report = omfs.sync(laptop, team, rebase=True)
    (row,) = report.objects
    assert row.action == "rebased" and row.conflicts == []
    assert row.rebased == [{"source_version": 3, "target_version": 4}]
    assert rows(team) == rows(laptop) == [1, 2, 4, 3], "each append applied exactly once"
    assert team.datasets.tags("d") == laptop.datasets.tags("d") == {"prod": 2}, "tag kept"
    assert tree(team) == tree(laptop), "both sides hold the same log and payloads"
    lineage = laptop.datasets.metadata("d").lineage["rebased_from"]
    assert lineage == {"context": laptop.root, "version": 3}, "the original id stays"
    # any later plain sync either way is a no-op; a re-run of the rebase too
    assert actions(omfs.sync(team, laptop)) == {"d": "unchanged"}
    assert actions(omfs.sync(laptop, team)) == {"d": "unchanged"}
    assert actions(omfs.sync(team, laptop, rebase=True)) == {"d": "unchanged"}
    assert actions(omfs.sync(laptop, team, rebase=True)) == {"d": "unchanged"}
    assert rows(laptop) == [1, 2, 4, 3]
    assert laptop.datasets.fsck("d") == [] and team.datasets.fsck("d") == []


def test_pull_rebase_converges_without_duplicating_rows(tmp_path, team):
    """The reported failure: the laptop ended with 1 2 3 4 3 (S3: the colleague's twice)."""
    laptop = omfs.setup(tmp_path / "laptop")
    diverge(laptop, team)
    team.datasets.tag("d@v3", "review")  # a tag moved in the target survives too
    report = omfs.sync(team, laptop, rebase=True)  # om pull --rebase
    assert actions(report) == {"d": "rebased"}
    assert rows(laptop) == rows(team) == [1, 2, 3, 4]
    assert laptop.datasets.tags("d") == team.datasets.tags("d") == {"prod": 2, "review": 4}
    assert tree(team) == tree(laptop)
    assert (
        actions(omfs.sync(laptop, team)) == actions(omfs.sync(team, laptop)) == {"d": "unchanged"}
    )


def test_a_rebase_killed_before_the_source_adopted_is_finished_by_a_rerun(
    tmp_path, team, monkeypatch
):
    """Killed after the target got d's rebased versions (before m's turn): the re-run
    applies none of d's again."""
    laptop = omfs.setup(tmp_path / "laptop")
    diverge(laptop, team)
    laptop.models.put({"w": 1}, "m")
    omfs.sync(laptop, team, names=["m"])
    laptop.models.put({"w": 2}, "m")
    team.models.put({"w": 3}, "m")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rebasing, "_adopt_target", killed)
    with pytest.raises(KeyboardInterrupt):
        omfs.sync(laptop, team, rebase=True)
    assert rows(team) == [1, 2, 4, 3] and rows(laptop) == [1, 2, 3]
    monkeypatch.undo()
    report = omfs.sync(laptop, team, rebase=True)
    done = {r.name: r.rebased for r in report.objects}
    assert done == {"d": [], "m": [{"source_version": 2, "target_version": 3}]}
    assert rows(team) == rows(laptop) == [1, 2, 4, 3]
    assert [m.version for m in team.models.versions("m")] == [1, 2, 3]
    assert team.models.get("m") == laptop.models.get("m") == {"w": 2}
    assert tree(team) == tree(laptop)


def test_a_killed_switch_of_history_reads_as_after_and_is_finished(tmp_path, monkeypatch):
    """Killed while the source's log was being rewritten: readers see the new history (the
    journal), a writer finishes the switch first, fsck is clean."""
    laptop, team = omfs.setup(tmp_path / "laptop"), omfs.setup(tmp_path / "team")
    diverge(laptop, team)
    real = laptop.datasets.finish_adopt

    def killed(self, name):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(laptop.datasets), "finish_adopt", killed)
    with pytest.raises(KeyboardInterrupt):
        omfs.sync(laptop, team, rebase=True)
    monkeypatch.undo()
    assert real  # the journal is there, the old log still on disk
    fresh = omfs.setup(laptop.root)
    assert rows(fresh) == [1, 2, 4, 3] and fresh.datasets.tags("d") == {"prod": 2}
    append(fresh, 5)  # a writer finishes the switch, then commits on top
    assert rows(fresh) == [1, 2, 4, 3, 5] and fresh.datasets.fsck("d") == []
    assert actions(omfs.sync(fresh, team)) == {"d": "copy"}
    assert tree(team) == tree(fresh)


def test_a_tag_moved_on_both_sides_is_a_reported_conflict(tmp_path, team):
    laptop = omfs.setup(tmp_path / "laptop")
    diverge(laptop, team)
    team.datasets.tag("d@v3", "prod")  # the colleague moved prod too, elsewhere
    report = omfs.sync(laptop, team, rebase=True)
    (line,) = report.conflicts
    assert "tag 'prod' of datasets/d moved on both sides (source: v2, target: v3)" in line
    assert team.datasets.tags("d") == {"prod": 3}, "nothing changed for that tag"
    assert rows(team) == rows(laptop) == [1, 2, 4, 3], "the rest was rebased"
    assert actions(omfs.sync(team, laptop)) == {"d": "unchanged"}


def test_a_dry_run_rebase_says_what_it_would_do_and_writes_nothing(tmp_path, team):
    laptop = omfs.setup(tmp_path / "laptop")
    diverge(laptop, team)
    before = tree(laptop), tree(team)
    (row,) = omfs.sync(laptop, team, rebase=True, dry_run=True).objects
    assert row.action == "would rebase"
    assert row.rebased == [{"source_version": 3, "target_version": 4}]
    assert row.tags == {"prod": 2}
    assert (tree(laptop), tree(team)) == before


def test_push_and_pull_rebase_from_the_cli(tmp_path, om_script):
    laptop, team = tmp_path / "laptop", tmp_path / "team"
    config = tmp_path / "config.toml"
    config.write_text(
        f'default = "laptop"\nremote = "team"\n[contexts.laptop]\nroot = "{laptop}"\n'
        f'[contexts.team]\nroot = "{team}"\n'
    )
    env = {**os.environ, "OMFS_CONFIG": str(config)}

    def om(*args, code=0):
        out = subprocess.run([om_script, *args], capture_output=True, text=True, env=env)
        assert out.returncode == code, out.stderr
        return out

    diverge(omfs.setup(laptop), omfs.setup(team))
    plan = json.loads(om("push", "--rebase", "--dry-run", "--json").stdout)
    assert plan["objects"][0]["action"] == "would rebase"
    assert "diverged" in om("push", code=1).stderr
    om("push", "--rebase")
    assert "nothing to copy" in om("pull").stderr
    assert "nothing to copy" in om("push").stderr
    assert rows(omfs.setup(laptop)) == [1, 2, 4, 3]
    append(omfs.setup(team), 5)
    append(omfs.setup(laptop), 6)
    shared = [(m.version, m.created) for m in omfs.setup(team).datasets.versions("d")]
    om("pull", "--rebase")
    # as git's pull --rebase: the remote's versions keep their numbers, this side's own
    # version goes on top of them
    assert rows(omfs.setup(laptop)) == rows(omfs.setup(team)) == [1, 2, 4, 3, 5, 6]
    kept = [(m.version, m.created) for m in omfs.setup(team).datasets.versions("d")]
    assert kept[: len(shared)] == shared
    assert "nothing to copy" in om("push").stderr
    assert "nothing to copy" in om("pull").stderr


# -- restore ----------------------------------------------------------------------------------
def test_restore_brings_back_the_whole_history(team):
    for x in range(7):  # more than a checkpoint interval
        append(team, x)
    team.datasets.tag("d@v2", "prod")
    team.datasets.tag("d@v5", "prod")
    team.models.put({"w": 1}, "m", tag="prod")
    team.models.put({"w": 2}, "m")
    history = team.datasets.tag_history("d")
    team.datasets.drop("d")
    team.models.drop("m")
    assert not team.datasets.exists("d") and team.datasets.list() == []
    team.gc(grace="1h")  # a drop keeps its files for the grace period
    assert team.datasets.restore("d").version == 7
    assert team.models.restore("m").version == 2
    assert rows(team) == list(range(7)) and team.datasets.tags("d") == {"prod": 5}
    assert team.datasets.tag_history("d") == history
    assert [m.version for m in team.datasets.versions("d")] == list(range(1, 8))
    assert team.models.get("m@prod") == {"w": 1} and team.models.list() == ["m"]
    append(team, 7)
    assert rows(team) == list(range(8)) and team.datasets.fsck("d") == []
    with pytest.raises(RestoreError, match="it exists"):
        team.datasets.restore("d")


def test_restore_after_gc_is_refused_in_one_line(tmp_path, om_script):
    root = tmp_path / "root"
    ctx = omfs.setup(root)
    append(ctx, 1)
    ctx.datasets.drop("d")
    ctx.gc(grace=0, force=True)
    with pytest.raises(RestoreError, match="gc already collected the files of its history"):
        ctx.datasets.restore("d")
    out = subprocess.run(
        [om_script, "--root", str(root), "datasets", "restore", "d"], capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "gc already collected" in out.stderr
    ctx.models.put({"w": 1}, "m")
    ctx.models.drop("m")
    out = subprocess.run(
        [om_script, "--root", str(root), "models", "restore", "m"], capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert ctx.models.get("m") == {"w": 1}


def test_sync_names_an_object_dropped_on_one_side(tmp_path, team):
    laptop = omfs.setup(tmp_path / "laptop")
    for x in range(4):
        append(laptop, x)
    omfs.sync(laptop, team)
    laptop.datasets.drop("d")
    (row,) = omfs.sync(team, laptop).objects  # om pull of an object dropped locally
    assert row.action == "dropped" and row.where == "target"
    assert "was dropped in the target" in row.message
    assert f"--root {laptop.root} --bucket omega datasets restore d" in row.message
    (row,) = omfs.sync(laptop, team).objects  # om push: the drop stays local
    assert row.action == "dropped" and row.where == "source"
    assert rows(team) == [0, 1, 2, 3]
    laptop.datasets.restore("d")  # the drop and the restore are history: a push sends both
    assert actions(omfs.sync(laptop, team)) == {"d": "copy"}
    assert rows(team) == [0, 1, 2, 3] and tree(team) == tree(laptop)
    # once gc collected the local history, a pull brings the remote's back as new
    laptop.datasets.drop("d")
    laptop.gc(grace=0, force=True)
    assert actions(omfs.sync(team, laptop)) == {"d": "copy"}
    assert rows(laptop) == [0, 1, 2, 3] and tree(laptop) == tree(team)


@pytest.mark.parametrize("drop", ["prune", "drop"])
def test_a_rebase_after_pruned_or_dropped_versions_converges(tmp_path, team, drop):
    """A version dropped or pruned before the sides diverged has no files any more: the
    rebase neither asks for them nor stops other objects (found by a first-week trial)."""
    laptop = omfs.setup(tmp_path / "laptop")
    for w in range(3):
        laptop.models.put({"w": w}, "m")
    if drop == "prune":
        laptop.models.prune("m", keep_last=1)
    else:
        laptop.models.drop("m@v1")
    omfs.sync(laptop, team)
    laptop.models.put({"w": "laptop"}, "m")
    team.models.put({"w": "team"}, "m")
    laptop.datasets.put(pd.DataFrame({"x": [1]}), "other")
    report = omfs.sync(laptop, team, rebase=True)
    assert actions(report) == {"m": "rebased", "other": "copy"}
    assert [v.version for v in laptop.models.versions("m")] == [
        v.version for v in team.models.versions("m")
    ]
    assert laptop.models.get("m") == team.models.get("m") == {"w": "laptop"}
    assert (
        actions(omfs.sync(laptop, team))
        == actions(omfs.sync(team, laptop))
        == {
            "m": "unchanged",
            "other": "unchanged",
        }
    )


def test_the_source_adopts_only_a_target_history_that_replays(tmp_path, team):
    """A rebase makes the source adopt the target's history: a target checkpoint that
    contradicts the target's commits (here: it forgets v1-v4) is refused, naming it, and
    the source keeps its own history and every version."""
    laptop = omfs.setup(tmp_path / "laptop")
    for x in range(1, 4):
        append(laptop, x)
    omfs.sync(laptop, team)
    append(laptop, 10)
    for x in (4, 5):
        append(team, x)  # the team's commits 4 and 5, with checkpoint 5
    key = f"omega/datasets/d/_log/{5:020d}.checkpoint.json"
    doc = json.loads(team.storage.read_bytes(key))
    doc["state"]["records"] = [r for r in doc["state"]["records"] if r["v"] == 5]
    team.storage.write_bytes(key, json.dumps(doc).encode())
    before, theirs = tree(laptop), tree(team)
    report = omfs.sync(laptop, team, rebase=True)
    (row,) = report.objects
    assert row.action == "refused" and "summarises" in row.error
    assert team.storage.path(key) in row.error
    assert tree(laptop) == before, "the source kept its history"
    assert tree(team) == theirs, "nothing was committed on the target"
    laptop.gc(grace="0s", force=True)
    assert rows(laptop) == [1, 2, 3, 10]
    assert [m.version for m in laptop.datasets.versions("d")] == [1, 2, 3, 4]

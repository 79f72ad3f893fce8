"""Sync copies only what the source's validated log vouches for (issue 17, items 1, 2 and 10).

Every hostile or damaged input is built in the test: a truncated payload, one with flipped
bytes at the same size, edited commits, symlinks. The target must keep what it had, stay
readable and appendable, and the report must name the bad source file.
"""

from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest

import omfs
from omfs.errors import IntegrityError
from omfs.storage import verify as _verify


def tree(ctx, bucket="omega"):
    """Every omfs file of a bucket (temporary files aside) and its bytes."""
    return {
        key: ctx.storage.fs.cat_file(ctx.storage.path(key))
        for key, _, _ in ctx.storage.inventory(bucket)
        if not key.rsplit("/", 1)[-1].startswith(".")
    }


def overwrite(ctx, key, data):
    """Change a file behind omfs' back (bit rot, or someone with write access)."""
    ctx.storage.fs.pipe_file(ctx.storage.path(key), data)


def damage(ctx, key, how):
    data = ctx.storage.fs.cat_file(ctx.storage.path(key))
    if how == "truncate":
        overwrite(ctx, key, data[: len(data) // 2])
    else:  # the same size, other bytes
        middle = len(data) // 2
        overwrite(ctx, key, data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    return ctx.storage.path(key)


def part_key(ctx, name, index=-1):
    return f"omega/datasets/{name}/_data/{ctx.datasets.parts(name)[index]['file']}"


def model_key(ctx, name):
    return f"omega/models/{name}/_data/{ctx.models.metadata(name).info['payload']}"


@pytest.fixture(params=["local-local", "local-s3", "s3-local"])
def sides(request, tmp_path):
    """(source, target): a push to a folder, a push to S3, a pull from S3."""

    def make(kind, name):
        if kind == "local":
            return omfs.setup(tmp_path / name)
        options = request.getfixturevalue("s3_options")
        return omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)

    a, b = request.param.split("-")
    return make(a, "source"), make(b, "target")


def seed(source, target):
    source.datasets.put(pd.DataFrame({"x": [1, 2]}), "sales")
    source.models.put({"w": 1}, "model")
    assert omfs.sync(source, target).copied == 2


def assert_target_intact(target):
    """The target still reads v1 of both objects and takes a new version."""
    assert target.datasets.get("sales")["x"].tolist() == [1, 2]
    assert target.models.get("model") == {"w": 1}
    assert target.datasets.fsck("sales") == [] and target.models.fsck("model") == []
    target.datasets.put(pd.DataFrame({"x": [7]}), "sales", append=True)
    target.models.put({"w": 7}, "model")
    assert target.datasets.get("sales")["x"].tolist() == [1, 2, 7]


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_payload_that_fails_its_check_is_refused_and_nothing_lands(sides, how):
    source, target = sides
    seed(source, target)
    source.datasets.put(pd.DataFrame({"x": [3]}), "sales", append=True)
    source.models.put({"w": 2}, "model")
    source.datasets.put(pd.DataFrame({"y": [1]}), "bystander")
    bad_part = damage(source, part_key(source, "sales"), how)
    bad_model = damage(source, model_key(source, "model"), how)
    before = tree(target)
    report = omfs.sync(source, target)
    rows = {r.name: r for r in report.objects}
    assert rows["sales"].action == rows["model"].action == "refused"
    assert bad_part in rows["sales"].error and bad_model in rows["model"].error
    word = "bytes" if how == "truncate" else "sha256"
    assert word in rows["sales"].error and word in rows["model"].error
    assert report.refused == 2 and rows["bystander"].action == "copy"
    assert target.datasets.get("bystander")["y"].tolist() == [1], "the others are synced"
    after = {k: v for k, v in tree(target).items() if "/bystander" not in k}
    assert after == before, "no commit, no payload of a refused object reached the target"
    assert_target_intact(target)


def test_a_damaged_payload_the_target_has_is_never_copied_over_it(sides):
    """The reported loss: v1 rots in the source, one more version is synced."""
    source, target = sides
    seed(source, target)
    bad_part = damage(source, part_key(source, "sales"), "truncate")
    bad_model = damage(source, model_key(source, "model"), "truncate")
    source.datasets.put(pd.DataFrame({"x": [3]}), "sales")
    source.models.put({"w": 2}, "model")
    before = tree(target)
    report = omfs.sync(source, target)
    rows = {r.name: r for r in report.objects}
    assert rows["sales"].action == rows["model"].action == "refused"
    assert bad_part in rows["sales"].error and bad_model in rows["model"].error
    assert tree(target) == before
    assert_target_intact(target)


def _hostile(doc, kind, store):
    if kind == "other-object":
        doc["name"] = "someone-else"
    elif kind == "passwd":
        info = doc["actions"][0]["add_version"]["info"]
        if store == "datasets":
            info["add"][0]["file"] = "../../etc/passwd"
        else:
            info["payload"] = "../../etc/passwd"
    elif kind == "format-3":
        doc["format"] = 3
    return json.dumps(doc).encode()


@pytest.mark.parametrize("kind", ["not-json", "other-object", "passwd", "format-3"])
def test_a_hostile_commit_is_refused_and_the_target_stays_good(sides, kind):
    source, target = sides
    seed(source, target)
    source.datasets.put(pd.DataFrame({"x": [3]}), "sales", append=True)
    source.models.put({"w": 2}, "model")
    errors = {}
    for store in ("datasets", "models"):
        name = "sales" if store == "datasets" else "model"
        key = f"omega/{store}/{name}/_log/{2:020d}.json"
        doc = json.loads(source.storage.fs.cat_file(source.storage.path(key)))
        overwrite(source, key, b"{not json" if kind == "not-json" else _hostile(doc, kind, store))
        errors[name] = source.storage.path(key)
    before = tree(target)
    report = omfs.sync(source, target)
    rows = {r.name: r for r in report.objects}
    for name, path in errors.items():
        assert rows[name].action == "refused", rows[name]
        assert path in rows[name].error
    assert tree(target) == before, "nothing of a hostile commit reached the target"
    assert not target.storage.exists("etc/passwd")
    assert_target_intact(target)


def test_a_symlinked_payload_is_refused_on_read_and_on_sync(tmp_path):
    source, target = omfs.setup(tmp_path / "source"), omfs.setup(tmp_path / "target")
    source.datasets.put(pd.DataFrame({"x": [1, 2]}), "sales")
    source.models.put({"w": 1}, "model")
    for key in (part_key(source, "sales"), model_key(source, "model")):
        path = source.storage.path(key)
        elsewhere = tmp_path / os.path.basename(path)  # the same bytes, outside the root
        os.replace(path, elsewhere)
        os.symlink(elsewhere, path)
    with pytest.raises(IntegrityError, match="symbolic link"):
        source.datasets.get("sales")
    with pytest.raises(IntegrityError, match="symbolic link"):
        source.models.get("model")
    report = omfs.sync(source, target)
    assert [r.action for r in report.objects] == ["refused", "refused"]
    assert all("symbolic link" in r.error for r in report.objects)
    assert tree(target) == {}


def test_a_symlinked_log_file_is_refused(tmp_path):
    ctx = omfs.setup(tmp_path / "root")
    ctx.models.put({"w": 1}, "model")
    path = ctx.storage.path(f"omega/models/model/_log/{1:020d}.json")
    elsewhere = tmp_path / "commit.json"
    os.replace(path, elsewhere)
    os.symlink(elsewhere, path)
    with pytest.raises(IntegrityError, match="symbolic link"):
        ctx.models.get("model")


@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_reading_a_damaged_part_names_the_file(backend, how, tmp_path, request):
    if backend == "local":
        ctx = omfs.setup(tmp_path / "root")
    else:
        options = request.getfixturevalue("s3_options")
        ctx = omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)
    ctx.datasets.put(pd.DataFrame({"x": list(range(1000))}), "sales")
    if backend == "local" and how == "flip":
        # a local read checks sizes only (no second read); a flip in the footer still fails
        path = ctx.storage.path(part_key(ctx, "sales"))
        data = ctx.storage.fs.cat_file(path)
        bad = data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]
        overwrite(ctx, part_key(ctx, "sales"), bad)
    else:
        path = damage(ctx, part_key(ctx, "sales"), how)
    reads = [lambda: ctx.datasets.get("sales")]
    if how == "truncate" or backend == "local":
        # a chunked read fetches row groups, never the whole part: a flipped value inside
        # one is not seen there (a whole read, or fsck, checks the sha256)
        reads.append(lambda: list(ctx.datasets.get("sales", chunksize=100)))
    for read in reads:
        with pytest.raises(IntegrityError) as info:
            read()
        assert path in str(info.value)
    assert any(os.path.basename(path) in problem for problem in ctx.datasets.fsck("sales"))


def test_parts_record_their_sha256_as_they_are_written(tmp_path):
    import hashlib

    ctx = omfs.setup(tmp_path / "root")
    ctx.datasets.put(pd.DataFrame({"x": [1, 2, 3]}), "sales")
    ctx.datasets.put(pd.DataFrame({"x": [4]}), "sales", append=True)
    ctx.datasets.compact("sales")
    for part in ctx.datasets.parts("sales"):
        data = ctx.storage.read_bytes(f"omega/datasets/sales/_data/{part['file']}")
        assert part["sha256"] == hashlib.sha256(data).hexdigest()
        assert part["size"] == len(data)


@pytest.mark.parametrize("pair", ["local-local", "local-s3", "s3-local"])
def test_large_payloads_stream_checked_and_a_bad_one_leaves_nothing(pair, tmp_path, request):
    """Payloads above the whole-file limit stream (a temporary file, an S3 multipart upload)
    and become files only when their sha256 matches."""
    mp = request.getfixturevalue("monkeypatch")
    mp.setattr(_verify, "_WHOLE_LIMIT", 512)

    def make(kind, name):
        if kind == "local":
            return omfs.setup(tmp_path / name)
        options = request.getfixturevalue("s3_options")
        return omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)

    a, b = pair.split("-")
    source, target = make(a, "source"), make(b, "target")
    source.datasets.put(pd.DataFrame({"x": list(range(2000))}), "good")
    source.datasets.put(pd.DataFrame({"x": list(range(3000))}), "bad")
    assert min(p["size"] for p in source.datasets.parts("bad")) > 512
    bad = damage(source, part_key(source, "bad"), "flip")
    report = omfs.sync(source, target)
    rows = {r.name: r for r in report.objects}
    assert rows["good"].action == "copy" and rows["bad"].action == "refused"
    assert bad in rows["bad"].error and "sha256" in rows["bad"].error
    assert target.datasets.get("good")["x"].tolist() == list(range(2000))
    assert not any("/bad/" in key for key in tree(target)), "no partial or bad payload"


def test_push_names_the_refused_object_in_one_line(tmp_path, om_script):
    laptop, team = tmp_path / "laptop", tmp_path / "team"
    config = tmp_path / "config.toml"
    config.write_text(
        f'default = "laptop"\nremote = "team"\n[contexts.laptop]\nroot = "{laptop}"\n'
        f'[contexts.team]\nroot = "{team}"\n'
    )
    ctx = omfs.setup(laptop)
    ctx.models.put({"w": 1}, "model")
    ctx.models.put({"w": 1}, "fine")
    bad = damage(ctx, model_key(ctx, "model"), "flip")
    env = {**os.environ, "OMFS_CONFIG": str(config)}
    out = subprocess.run([om_script, "push"], capture_output=True, text=True, env=env)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    refused = [line for line in out.stderr.splitlines() if line.startswith("om: refused:")]
    assert len(refused) == 1 and bad in refused[0] and "omega/models/model" in refused[0]
    assert omfs.setup(team).models.get("fine") == {"w": 1}


def test_parts_without_a_sha256_sync_by_size(tmp_path):
    """Parts written before omfs recorded their sha256 (an upgraded omfs 0.1 store) are
    checked by size, and still read and sync."""
    import shutil
    from pathlib import Path

    root = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "omfs-0.1-store", root)
    old, target = omfs.setup(root), omfs.setup(tmp_path / "target")
    old.datasets.upgrade_all()
    old.models.upgrade_all()
    assert all("sha256" not in p for p in old.datasets.parts("sales"))
    report = omfs.sync(old, target, buckets=["omega"])
    assert report.refused == 0 and report.copied == 5
    assert target.datasets.get("sales")["a"].tolist() == list(range(1, 10))
    assert target.datasets.get("sales@prod")["a"].tolist() == list(range(1, 7))
    damage(old, part_key(old, "team/other"), "truncate")
    old.datasets.put(pd.DataFrame({"x": [3.5]}), "team/other", append=True)
    row = next(r for r in omfs.sync(old, target).objects if r.name == "team/other")
    assert row.action == "refused" and "bytes" in row.error
    assert target.datasets.get("team/other")["x"].tolist() == [2.5]


def test_sync_refuses_a_name_that_looks_like_one_in_the_target(tmp_path):
    """Two laptops push `report` and `Report`: put refuses such a pair in one root, and so
    does sync (found by a first-week trial: the team context listed both)."""
    import pandas as pd

    team = omfs.setup(tmp_path / "team")
    one, two = omfs.setup(tmp_path / "one"), omfs.setup(tmp_path / "two")
    one.datasets.put(pd.DataFrame({"a": [1]}), "report")
    two.datasets.put(pd.DataFrame({"a": [2]}), "Report")
    assert omfs.sync(one, team).copied == 1
    report = omfs.sync(two, team)
    (row,) = report.objects
    assert row.action == "refused" and "'report'" in row.error
    assert team.datasets.list() == ["report"]


# -- copied history must extend the history the target holds (the attacker's report, 1 and 3) --
def log_key(store, name, seq, checkpoint=False):
    suffix = ".checkpoint.json" if checkpoint else ".json"
    return f"omega/{store}/{name}/_log/{seq:020d}{suffix}"


def edit_doc(ctx, key, change):
    doc = json.loads(ctx.storage.fs.cat_file(ctx.storage.path(key)))
    change(doc)
    overwrite(ctx, key, json.dumps(doc).encode())
    return ctx.storage.path(key)


def assert_history_kept(target, versions):
    """The target holds ``versions`` of ``model``, each readable, also after a forced gc."""
    target.gc(grace="0s", force=True)
    assert [m.version for m in target.models.versions("model")] == versions
    for v in versions:
        assert target.models.get("model", version=v) == {"w": v}


def test_a_checkpoint_that_forgets_versions_is_refused(sides):
    """The report: a checkpoint holding only v5 made the target forget v1-v4, then gc
    deleted their payloads."""
    source, target = sides
    for v in range(1, 4):
        source.models.put({"w": v}, "model")
    omfs.sync(source, target)
    for v in range(4, 7):
        source.models.put({"w": v}, "model")
    key = log_key("models", "model", 5, checkpoint=True)
    bad = edit_doc(
        source,
        key,
        lambda d: d["state"].update(records=[r for r in d["state"]["records"] if r["v"] == 5]),
    )
    before = tree(target)
    row = omfs.sync(source, target).objects[0]
    assert row.action == "refused" and bad in row.error, row
    assert "summarises" in row.error
    assert tree(target) == before, "nothing of the object reached the target"
    assert_history_kept(target, [1, 2, 3])


@pytest.mark.parametrize("edit", ["next", "records"])
def test_a_commit_whose_head_contradicts_its_history_is_refused(sides, edit):
    """The report: a commit whose head said next=1 made the target's next put re-create
    version 1, and gc then deleted the original v1 payload."""
    source, target = sides
    for v in range(1, 4):
        source.models.put({"w": v}, "model")
    omfs.sync(source, target)
    source.models.update_attributes("model", {"k": 1}, version=3)

    def change(doc):
        if edit == "next":
            doc["head"]["next"] = 1
        else:  # the head holds an extra record: readers would take it for v1
            v3 = next(r for r in doc["head"]["records"] if r["v"] == 3)
            doc["head"]["records"].append({**v3, "v": 1})

    bad = edit_doc(source, log_key("models", "model", 4), change)
    before = tree(target)
    row = omfs.sync(source, target).objects[0]
    assert row.action == "refused" and bad in row.error and "head" in row.error, row
    assert tree(target) == before
    assert target.models.put({"w": 4}, "model").version == 4
    assert_history_kept(target, [1, 2, 3, 4])


def test_a_payload_the_source_lacks_refuses_the_object(sides):
    """The report: v2's part deleted in the source, then synced to an empty target: the
    commits went across, rc 0, and the target's v2 could not be read."""
    source, target = sides
    source.datasets.put(pd.DataFrame({"x": [1]}), "sales")
    source.datasets.put(pd.DataFrame({"x": [2]}), "sales", append=True)
    source.models.put({"w": 1}, "model")
    gone = part_key(source, "sales", index=-1)
    source.storage.delete([gone])
    report = omfs.sync(source, target)
    rows = {r.name: r for r in report.objects}
    assert rows["sales"].action == "refused" and report.refused == 1
    assert source.storage.path(gone) in rows["sales"].error
    assert "missing" in rows["sales"].error
    assert rows["model"].action == "copy" and target.models.get("model") == {"w": 1}
    assert not any("/sales/" in key for key in tree(target)), "nothing of it landed"


def test_a_payload_only_the_target_holds_is_not_needed_from_the_source(sides):
    """A part the source lost but the target has: the new versions that read it go across."""
    source, target = sides
    source.datasets.put(pd.DataFrame({"x": [1]}), "sales")
    omfs.sync(source, target)
    source.storage.delete([part_key(source, "sales")])
    source.datasets.put(pd.DataFrame({"x": [2]}), "sales", append=True)
    row = omfs.sync(source, target).objects[0]
    assert row.action == "copy", row
    assert target.datasets.get("sales")["x"].tolist() == [1, 2]

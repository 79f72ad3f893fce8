"""Local-first sync: replicate buckets with their history, detect divergence, resume after a
kill; bundles for air-gapped moves; releases with their training inputs."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pandas as pd
import pytest

import omfs
from omfs.errors import DivergedError, IntegrityError, NotFoundError, OmfsError
from omfs.ops.reports import SyncReport, SyncRow


def tree(ctx, bucket="omega"):
    """Every omfs file of a bucket (temporary files and gc leases aside: a killed writer's
    stays until it expires) and its bytes."""
    return {
        key: ctx.storage.read_bytes(key)
        for key, _, _ in ctx.storage.inventory(bucket)
        if not key.rsplit("/", 1)[-1].startswith(".") and "/_leases/" not in key
    }


def fill(ctx, n=3):
    for i in range(n):
        ctx.datasets.put(pd.DataFrame({"x": [i]}), "sales", append=True)
    ctx.datasets.tag("sales@v2", "prod")
    ctx.models.put({"w": 1}, "model")
    ctx.models.put({"w": 2}, "model", tag="prod")
    ctx.models.update_attributes("model", {"owner": "ana"})
    ctx["team"].datasets.put(b"raw bytes", "blob")


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path):
    if request.param == "local":
        return omfs.setup(tmp_path / "target")
    options = request.getfixturevalue("s3_options")
    return omfs.setup(request.getfixturevalue("s3_root_factory")(), storage_options=options)


def test_sync_replicates_history_and_is_idempotent(tmp_path, target):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    report = omfs.sync(laptop, target)
    assert report.copied == 3 and report.diverged == 0
    for bucket in ("omega", "team"):
        assert tree(target, bucket) == tree(laptop, bucket), "identical logs and payloads"
    assert [m.version for m in target.datasets.versions("sales")] == [1, 2, 3]
    assert target.datasets.tags("sales") == {"prod": 2}
    assert target.models.tag_history("model") == laptop.models.tag_history("model")
    assert target.models.metadata("model").attributes == {"owner": "ana"}
    assert target["team"].datasets.get("blob") == b"raw bytes"
    again = omfs.sync(laptop, target)
    assert again.copied == 0 and again.bytes == 0 and again.unchanged == 3
    # work goes on offline, then is pushed: only the new commits and payloads travel
    laptop.datasets.put(pd.DataFrame({"x": [9]}), "sales", append=True)
    plan = omfs.sync(laptop, target, dry_run=True)
    assert [(r.name, r.action) for r in plan.objects if r.action != "unchanged"] == [
        ("sales", "copy")
    ]
    assert target.datasets.metadata("sales").version == 3, "a dry run writes nothing"
    omfs.sync(laptop, target, names=["sal*"])
    assert target.datasets.get("sales")["x"].tolist() == [0, 1, 2, 9]


def test_no_change_sync_costs_less_than_one_request_per_object(s3_counter, s3_options, tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    for i in range(40):
        laptop.models.put({"i": i}, f"m{i}")
    team = omfs.setup(_root(s3_options), storage_options=s3_options)
    omfs.sync(laptop, team)
    s3_counter.reset()
    report = omfs.sync(laptop, team)
    assert report.unchanged == 40
    assert s3_counter.total <= 40 // 4 + 5, s3_counter.requests


def _root(options):
    import uuid

    import s3fs

    bucket = f"omfs-sync-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}/team"


def test_divergence_raises_after_the_others_are_synced(tmp_path):
    """A scheduled script notices (issue 19, item 3): DivergedError, an OmfsError carrying
    the typed report, once every other object was synced; a dry run only reports it."""
    laptop, team = omfs.setup(tmp_path / "laptop"), omfs.setup(tmp_path / "team")
    fill(laptop)
    omfs.sync(laptop, team)
    laptop.datasets.put(pd.DataFrame({"x": [10]}), "sales", append=True)
    team.datasets.put(pd.DataFrame({"x": [20]}), "sales", append=True)
    laptop.models.put({"w": 2}, "model")  # an object that syncs fine beside it
    before = tree(team)
    assert omfs.sync(laptop, team, dry_run=True).diverged == 1, "a dry run says it"
    assert tree(team) == before
    with pytest.raises(DivergedError, match="omega/datasets/sales") as info:
        omfs.sync(laptop, team)
    assert isinstance(info.value, OmfsError) and "rebase=True" in str(info.value)
    report = info.value.report
    assert isinstance(report, SyncReport) and report.diverged == 1 and report.copied == 1
    (row,) = report.rows("diverged")
    assert isinstance(row, SyncRow)
    assert row.name == "sales" and row.source_commits == row.target_commits == 5
    assert row.source_versions == row.target_versions == [1, 2, 3, 4]
    assert team.models.get("model") == {"w": 2}, "the other object was synced"
    assert team.datasets.get("sales")["x"].tolist() == [0, 1, 2, 20], "left unchanged"
    assert json.loads(json.dumps(report.to_dict()))["objects"][0] == {
        "bucket": "omega", "store": "datasets", "name": "sales", "source_commits": 5,
        "target_commits": 5, "bytes": 0, "files": 0, "action": "diverged",
        "source_versions": [1, 2, 3, 4], "target_versions": [1, 2, 3, 4],
    }  # fmt: skip
    assert omfs.sync(laptop, team, rebase=True).rebased == 1, "rebase=True: no error"


def test_a_target_simply_ahead_is_behind_not_diverged(tmp_path):
    """The source holds a prefix of the target's history: nothing to copy, no error."""
    laptop, team = omfs.setup(tmp_path / "laptop"), omfs.setup(tmp_path / "team")
    laptop.models.put({"w": 1}, "m")
    omfs.sync(laptop, team)
    team.models.put({"w": 2}, "m")
    (row,) = omfs.sync(laptop, team).objects
    assert (row.action, row.source_versions, row.target_versions) == ("behind", [1], [1, 2])
    assert [r.action for r in omfs.sync(team, laptop).objects] == ["copy"]


def test_an_unknown_bucket_is_an_error_naming_those_that_exist(tmp_path):
    laptop, team = omfs.setup(tmp_path / "laptop"), omfs.setup(tmp_path / "team")
    fill(laptop)
    with pytest.raises(NotFoundError, match=r"bucket 'omgea' does not exist.*omega, team"):
        omfs.sync(laptop, team, buckets=["omgea"])
    assert not os.path.exists(team.root)


def test_rebase_recommits_source_only_versions_on_top(tmp_path, om_script):
    laptop, team = omfs.setup(tmp_path / "laptop"), omfs.setup(tmp_path / "team")
    fill(laptop)
    laptop.models.put({"w": 0}, "solo")
    omfs.sync(laptop, team)
    laptop.datasets.put(pd.DataFrame({"x": [10]}), "sales", append=True)  # laptop v4: append
    laptop.datasets.put(pd.DataFrame({"x": [11]}), "sales", append=True)  # laptop v5: append
    laptop.datasets.tag("sales@v5", "candidate")
    laptop.models.put({"w": 9}, "solo")  # laptop v2 of a model: a put
    team.datasets.put(pd.DataFrame({"x": [20]}), "sales", append=True)  # team v4
    team.models.put({"w": 7}, "solo")  # team v2
    report = omfs.sync(laptop, team, rebase=True)
    rows = {r.name: r for r in report.objects if r.action == "rebased"}
    assert rows["sales"].rebased == [
        {"source_version": 4, "target_version": 5},
        {"source_version": 5, "target_version": 6},
    ]
    assert team.datasets.get("sales")["x"].tolist() == [0, 1, 2, 20, 10, 11]
    assert team.datasets.tags("sales") == {"prod": 2, "candidate": 6}
    meta = team.datasets.metadata("sales")
    assert meta.lineage["rebased_from"]["version"] == 5
    assert meta.lineage["rebased_from"]["context"] == laptop.root
    assert team.models.get("solo") == {"w": 9} and team.models.get("solo@v2") == {"w": 7}
    assert team.models.metadata("solo").lineage["rebased_from"]["version"] == 2
    assert laptop.datasets.get("sales")["x"].tolist() == [0, 1, 2, 20, 10, 11], "source adopts"
    assert team.datasets.fsck("sales") == [] and team.models.fsck("solo") == []


def test_a_killed_sync_resumes_consistently(tmp_path, target):
    laptop = tmp_path / "laptop"
    ctx = omfs.setup(laptop)
    for i in range(30):
        ctx.datasets.put(pd.DataFrame({"x": list(range(200))}), f"d{i}")
        ctx.datasets.put(pd.DataFrame({"x": [i]}), f"d{i}", append=True)
    options = json.dumps(target.storage.options)
    reopen = functools.partial(omfs.setup, target.root, storage_options=target.storage.options)
    script = (
        f"import json, omfs; omfs.sync(omfs.setup({str(laptop)!r}), "
        f"omfs.setup({target.root!r}, storage_options=json.loads({options!r})))"
    )
    mid_sync = 0
    for files in (5, 60, 120):  # kill once the target holds this many files (of ~270)
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.monotonic() + 120
        while len(target.storage.inventory("omega")) < files and proc.poll() is None:
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_sync += omfs.sync(ctx, reopen(), dry_run=True).copied > 0
        partial = reopen()
        for name in partial.datasets.list():  # a new object appears whole, or not at all
            assert [m.version for m in partial.datasets.versions(name)] == [1, 2]
            assert len(partial.datasets.get(name)) == 201
    assert mid_sync >= 2, "the kills landed while the sync ran"
    report = omfs.sync(ctx, reopen())
    assert report.diverged == 0
    assert tree(reopen()) == tree(ctx), "nothing duplicated, nothing missing"
    assert omfs.sync(ctx, reopen()).copied == 0


def test_sync_push_and_pull_from_the_cli(tmp_path, om_script):
    laptop, team = tmp_path / "laptop", tmp_path / "team"
    config = tmp_path / "config.toml"
    config.write_text(
        f'default = "laptop"\nremote = "team"\n[contexts.laptop]\nroot = "{laptop}"\n'
        f'[contexts.team]\nroot = "{team}"\n'
    )
    env = {**os.environ, "OMFS_CONFIG": str(config)}
    fill(omfs.setup(laptop))

    def om(*args, code=0):
        out = subprocess.run([om_script, *args], capture_output=True, text=True, env=env)
        assert out.returncode == code, out.stderr
        return out

    plan = json.loads(om("sync", "--from-context", "laptop", "--to-context", "team",
                         "--dry-run", "--json").stdout)  # fmt: skip
    assert plan["copied"] == 3 and not team.exists()
    om("push", "--bucket", "omega")
    assert omfs.setup(team).datasets.tags("sales") == {"prod": 2}
    assert "nothing to copy" in om("push", "--bucket", "omega").stderr
    omfs.setup(team).models.put({"w": 3}, "model")
    om("pull")
    assert omfs.setup(laptop).models.get("model") == {"w": 3}
    omfs.setup(team).models.put({"w": 4}, "model")
    omfs.setup(laptop).models.put({"w": 5}, "model")
    out = om("push", code=1)
    assert "diverged and were left unchanged: omega/models/model" in out.stderr


def test_progress_counts_bytes_and_objects(tmp_path, om_script):
    import pty

    laptop, team = omfs.setup(tmp_path / "laptop"), tmp_path / "team"
    fill(laptop)
    seen, sent = [], []
    report = omfs.sync(laptop, omfs.setup(team), progress=sent.append, on_object=seen.append)
    assert seen == report.objects and len(seen) == 3  # one row per object, as it ends
    assert sum(sent) == sum(r.bytes for r in report.objects if r.action == "copy")
    laptop["team"].datasets.put(pd.DataFrame({"x": range(10)}), "more")
    # on a terminal, `om sync` shows both: N/M objects and the bytes
    config = tmp_path / "config.toml"
    config.write_text(
        f'[contexts.laptop]\nroot = "{laptop.root}"\n[contexts.team]\nroot = "{team}"\n'
    )
    env = {**os.environ, "COLUMNS": "120", "OMFS_CONFIG": str(config)}
    args = [om_script, "sync", "--from-context", "laptop", "--to-context", "team"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(om_script, args, env)
    output = b""
    try:
        while chunk := os.read(fd, 4096):
            output += chunk
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "/4 objects" in text, text
    assert "kB" in text or " bytes" in text, text


def test_bundles_move_history_and_are_verified(tmp_path, om_script):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    bundle = tmp_path / "release.tar"
    manifest = omfs.export(laptop, ["sales", "models/model"], bundle)
    assert manifest["objects"] == ["omega/datasets/sales", "omega/models/model"]
    airgapped = omfs.setup(tmp_path / "airgapped")
    report = omfs.import_(bundle, airgapped)
    assert report["copied"] == 2
    assert tree(airgapped) == {
        k: v for k, v in tree(laptop).items() if "/sales" in k or "/model" in k or "_index" in k
    }
    assert omfs.import_(bundle, airgapped)["copied"] == 0
    # a damaged member: its object is refused (and nothing of it written), the rest imported
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(bundle) as src, tarfile.open(damaged, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".parquet"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data))
    fresh = omfs.setup(tmp_path / "fresh")
    with pytest.raises(IntegrityError, match="does not match its sha256"):
        omfs.import_(damaged, fresh)
    assert not fresh.datasets.exists("sales") and fresh.models.exists("model")
    assert not (tmp_path / "fresh" / "omega" / "datasets").exists()
    # a member outside the omfs layout (a path escaping the root) is refused
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(bundle) as src, tarfile.open(hostile, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 1
        dst.addfile(evil, io.BytesIO(b"x"))
    with pytest.raises(IntegrityError, match="not an omfs file"):
        omfs.import_(hostile, omfs.setup(tmp_path / "fresh2"))
    assert not (tmp_path / "evil.txt").exists()
    # and from the CLI
    out = subprocess.run(
        [om_script, "--root", str(tmp_path / "laptop"), "export", "sales", "-o", "b.tar"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0 and "1 object(s)" in out.stdout
    out = subprocess.run(
        [om_script, "--root", str(tmp_path / "cli"), "import", "b.tar"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0 and "omega/datasets/sales\tcopy" in out.stdout


def test_promote_with_inputs_and_a_failure_leaves_the_target_as_it_was(tmp_path, monkeypatch):
    from sklearn.linear_model import LinearRegression

    dev, prod = omfs.setup(tmp_path / "dev"), omfs.setup(tmp_path / "prod")
    dev.datasets.put(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), "X")
    dev.datasets.put(pd.DataFrame({"y": [2.0, 4.0, 6.0]}), "Y")
    dev.datasets.put(pd.DataFrame({"x": [9.0]}), "X", append=True)  # trained on v1, not v2
    dev.models.put(LinearRegression(), "m")
    dev.runtime.mode(local=True).model("m").fit("X@v1", "Y").get()
    prod.datasets.put(pd.DataFrame({"x": [0.0]}), "X")  # prod has an X of its own

    real = type(prod.models).commit

    def failing(self, *args, **kwargs):
        raise OSError("network lost")

    monkeypatch.setattr(type(prod.models), "commit", failing)
    with pytest.raises(OSError, match="network lost"):
        dev.models.promote("m", prod.models, with_inputs=True)
    monkeypatch.setattr(type(prod.models), "commit", real)
    assert [m.version for m in prod.datasets.versions("X")] == [1], "X v2 was dropped again"
    assert not prod.datasets.exists("Y") and not prod.models.exists("m")

    meta = dev.models.promote("m", prod.models, with_inputs=True)
    trained = {e["role"]: e for e in meta.lineage["trained_on"]}
    assert trained["X"]["promoted_from"]["version"] == 1
    assert trained["X"]["version"] == prod.datasets.metadata("X").version == 3  # not reused
    assert prod.datasets.get("X@v3")["x"].tolist() == [1.0, 2.0, 3.0]
    assert prod.datasets.get(f"Y@v{trained['Y']['version']}")["y"].tolist() == [2.0, 4.0, 6.0]


def test_cli_sync_push_and_pull_say_what_to_do(tmp_path, cli):
    """Issue 19, items 3 and 13 from the command line: an unknown bucket is an error naming
    those that exist; a remote simply ahead is "behind: pull first"; a divergence prints the
    report and exits 1 with one line naming --rebase; pull --rebase --dry-run says "would
    rebase" (one report, also with --json), and then --rebase does it."""
    laptop, team = tmp_path / "laptop", tmp_path / "team"
    config = tmp_path / "config.toml"
    config.write_text(
        f'default = "laptop"\nremote = "team"\n[contexts.laptop]\nroot = "{laptop}"\n'
        f'[contexts.team]\nroot = "{team}"\n'
    )
    env = {"OMFS_CONFIG": str(config)}
    fill(omfs.setup(laptop))
    out = cli("sync", "--from-context", "laptop", "--to-context", "team", "--bucket", "omgea",
              env=env)  # fmt: skip
    assert out.code == 1 and "nothing to copy" not in out.stderr
    assert "bucket 'omgea' does not exist" in out.stderr and "omega, team" in out.stderr
    assert cli("push", env=env).code == 0
    omfs.setup(team).models.put({"w": 2}, "model")  # the remote is simply ahead
    out = cli("push", env=env)
    assert out.code == 0 and "models/model\tbehind: pull first" in out.stdout, out.stdout
    assert cli("pull", env=env).code == 0
    append = {"append": True}
    omfs.setup(team).datasets.put(pd.DataFrame({"x": [20]}), "sales", **append)
    omfs.setup(laptop).datasets.put(pd.DataFrame({"x": [10]}), "sales", **append)
    out = cli("push", env=env)
    assert out.code == 1 and "datasets/sales\tdiverged" in out.stdout
    (line,) = out.stderr.strip().splitlines()
    assert "diverged and were left unchanged: omega/datasets/sales" in line
    assert "`om push --rebase`" in line
    out = cli("pull", "--rebase", "--dry-run", env=env)
    assert out.code == 0 and "diverged" not in out.stdout + out.stderr
    assert "datasets/sales\twould rebase" in out.stdout
    plan = json.loads(cli("--json", "pull", "--rebase", "--dry-run", env=env).stdout)
    assert [r["action"] for r in plan["objects"] if r["name"] == "sales"] == ["would rebase"]
    assert plan["diverged"] == 0
    assert cli("pull", "--rebase", env=env).code == 0
    assert omfs.setup(laptop).datasets.get("sales")["x"].tolist() == [0, 1, 2, 20, 10]
    assert omfs.setup(team).datasets.get("sales")["x"].tolist() == [0, 1, 2, 20, 10]

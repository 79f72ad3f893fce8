"""Bundles under hostile input (issue 17, items 1, 2, 12 and 14): what `om import` refuses,
that memory stays bounded, that the target is never overwritten, and that staging leaves
nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

import pandas as pd
import pytest

import omfs
from omfs.errors import FormatError, IntegrityError, NotFoundError
from omfs.ops import bundle as bundles
from omfs.ops import staging
from omfs.ops.fsck import fsck

MANIFEST = bundles.MANIFEST


def fill(ctx):
    for i in range(2):
        ctx.datasets.put(pd.DataFrame({"x": [i]}), "sales", append=i > 0)
    ctx.datasets.tag("sales@v1", "prod")
    ctx.models.put({"w": 1}, "model")
    ctx.models.put({"w": 2}, "model")


def open_ctx(root_options, sub=""):
    root, options = root_options
    return omfs.setup(f"{root}{sub}", storage_options=options)


def rebuild(src, dst, edit=None, extra=()):
    """Copy bundle ``src`` to ``dst``: ``edit(path, data)`` may change a member's bytes (the
    manifest is updated to match, so only the log can tell), ``extra`` adds members."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop(MANIFEST))
    for entry in manifest["files"]:
        data = members[entry["path"]]
        if edit is not None:
            data = edit(entry["path"], data)
        members[entry["path"]] = data
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with tarfile.open(dst, "w") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return dst


def plain_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def manifest_bundle(path, doc):
    return plain_tar(path, {MANIFEST: json.dumps(doc).encode()})


def tree(ctx):
    storage = ctx.storage
    return {
        k: storage.read_bytes(k) for k, _, _ in storage.inventory("") if ".omfs-import" not in k
    }


def staging_left(ctx):
    return [k for k, _, _ in ctx.storage.inventory(bundles.STAGING)]


@pytest.fixture
def exported(tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales", "models/model"], path)
    return laptop, path


# -- item 14: one clear line for what is not a bundle -------------------------------------------
def test_what_is_not_a_bundle_is_refused_with_one_line(tmp_path, exported, om_script):
    target = omfs.setup(tmp_path / "target")
    (tmp_path / "notes.txt").write_text("not a tar at all\n" * 40)
    cases = {
        tmp_path / "notes.txt": (IntegrityError, "not a readable tar file"),
        tmp_path / "missing.tar": (NotFoundError, "No bundle at"),
        manifest_bundle(tmp_path / "x.tar", {"format": 1, "objects": ["x"], "files": []}): (
            IntegrityError,
            "names the object 'x'",
        ),
        manifest_bundle(
            tmp_path / "f.tar",
            {
                "format": 1,
                "objects": ["omega/datasets/x"],
                "files": [{"path": "omega/datasets/_index/x"}],
            },
        ): (
            IntegrityError,
            "no valid size",
        ),
        manifest_bundle(tmp_path / "l.tar", [1, 2]): (IntegrityError, "not a JSON object"),
        manifest_bundle(tmp_path / "v3.tar", {"format": 3, "objects": [], "files": []}): (
            FormatError,
            "bundle format 3 by a newer omfs",
        ),
        manifest_bundle(tmp_path / "va.tar", {"format": "abc"}): (FormatError, "'abc'"),
        plain_tar(tmp_path / "none.tar", {"a.txt": b"x"}): (IntegrityError, "holds no omfs-bundle"),
    }
    for path, (error, text) in cases.items():
        with pytest.raises(error, match=text):
            omfs.import_(path, target)
    assert not (tmp_path / "target").exists()
    for path in (tmp_path / "notes.txt", tmp_path / "x.tar"):
        out = subprocess.run(
            [om_script, "--root", str(tmp_path / "target"), "import", str(path)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# -- item 12: what a tar may hold, and memory -------------------------------------------------
def test_links_devices_paths_and_compressed_bundles_are_refused(tmp_path, exported):
    _, path = exported
    target = omfs.setup(tmp_path / "target")

    def member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        return info, data if kind == tarfile.REGTYPE else None

    cases = {
        "symlink": member("omega/datasets/sales/_data/x", tarfile.SYMTYPE, link="/etc/passwd"),
        "hardlink": member("omega/datasets/s2/_data/y", tarfile.LNKTYPE, link="/etc/passwd"),
        "device": member("omega/datasets/sales/_data/dev", tarfile.CHRTYPE),
        "folder": member("omega/datasets/sales/_data", tarfile.DIRTYPE),
        "absolute": member("/etc/cron.d/evil"),
        "dotdot": member("omega/datasets/../../../evil"),
    }
    for case, extra in cases.items():
        bad = rebuild(path, tmp_path / f"{case}.tar", extra=[extra])
        with pytest.raises(IntegrityError, match=r"is a link|is a device|is a folder|not an omfs"):
            omfs.import_(bad, target)
    with open(path, "rb") as f, gzip.open(tmp_path / "b.tar.gz", "wb") as g:
        g.write(f.read())
    with pytest.raises(IntegrityError, match="gzip-compressed, and omfs opens plain tar"):
        omfs.import_(tmp_path / "b.tar.gz", target)
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "evil").exists()


_MEASURE = textwrap.dedent(
    """
    import resource, sys
    import omfs
    from omfs.errors import OmfsError
    target = omfs.setup(sys.argv[1])
    omfs.import_(sys.argv[2], target)  # warm up: every module a real import loads
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        omfs.import_(sys.argv[3], target)
    except OmfsError as exc:
        print(type(exc).__name__, exc, file=sys.stderr)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """
)


def _sparse_bundle(tmp_path, size):
    """A small tar whose one member is a sparse file of ``size`` bytes (GNU tar -S)."""
    folder = tmp_path / "sparse"
    data = folder / "omega" / "datasets" / "big" / "_data"
    data.mkdir(parents=True)
    with open(data / f"{'a' * 32}.parquet", "wb") as f:
        f.truncate(size)
    out = tmp_path / "sparse.tar"
    member = f"omega/datasets/big/_data/{'a' * 32}.parquet"
    subprocess.run(["tar", "-S", "-cf", str(out), "-C", str(folder), member], check=True)
    manifest = {
        "format": 1,
        "objects": ["omega/datasets/big"],
        "files": [
            {
                "path": f"omega/datasets/big/_data/{'a' * 32}.parquet",
                "size": size,
                "sha256": "0" * 64,
            }
        ],
    }
    body = json.dumps(manifest).encode()
    with tarfile.open(out, "a") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return out


def _gzip_bomb(tmp_path, size):
    """A gzip'd tar whose member expands to ``size`` zero bytes (built in chunks)."""
    out = tmp_path / "bomb.tar"
    with gzip.open(out, "wb", compresslevel=9) as g:
        info = tarfile.TarInfo(MANIFEST)
        info.size = size
        g.write(info.tobuf(format=tarfile.GNU_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(size >> 20):
            g.write(zeros)
    return out


def _big_member(tmp_path, size):
    """A bundle whose payload member really holds ``size`` bytes, one of them flipped: it
    streams in chunks until its sha256 is found wrong."""
    laptop = omfs.setup(tmp_path / "big-src")
    laptop.datasets.put(os.urandom(1 << 20) * (size >> 20), "big")
    path = tmp_path / "big.tar"
    omfs.export(laptop, ["big"], path)
    with tarfile.open(path) as tar:
        offset = next(m.offset_data for m in tar.getmembers() if "/_data/" in m.name)
    with open(path, "r+b") as f:
        f.seek(offset + size - 1)
        last = f.read(1)
        f.seek(offset + size - 1)
        f.write(bytes([last[0] ^ 1]))
    return path


def test_memory_stays_bounded_whatever_the_bundle_says(tmp_path, exported):
    _, good = exported
    hostile = {
        "sparse": _sparse_bundle(tmp_path, 512 << 20),
        "gzip": _gzip_bomb(tmp_path, 256 << 20),
        "big": _big_member(tmp_path, 48 << 20),
    }
    assert all(os.path.getsize(p) < 2 << 20 for k, p in hostile.items() if k != "big")
    bound = 2 * bundles.CHUNK + (8 << 20)  # two chunks, plus the allocator's noise
    for case, path in hostile.items():
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(tmp_path / f"t-{case}"), str(good), str(path)],
            capture_output=True, text=True, timeout=120, env={**os.environ},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        grew = int(out.stdout.strip().splitlines()[-1])
        assert grew < bound, f"{case}: RSS grew by {grew / 2**20:.1f} MiB ({out.stderr})"
        assert "Error" in out.stderr, out.stderr
        target = omfs.setup(tmp_path / f"t-{case}")
        assert staging_left(target) == []
    with pytest.raises(IntegrityError, match="is a sparse file"):
        omfs.import_(hostile["sparse"], omfs.setup(tmp_path / "t2"))


# -- bucket: what the user names ----------------------------------------------------------------
def test_import_honours_the_bucket_the_user_names(shared_root, tmp_path, om_script):
    laptop = omfs.setup(tmp_path / "laptop", bucket="prod")
    fill(laptop)
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales", "models/model"], path)
    target = open_ctx(shared_root)
    target.datasets.put(pd.DataFrame({"y": [1]}), "own")  # the target has bucket omega only
    with pytest.raises(NotFoundError, match=r"bucket 'prod' does not exist.*create_bucket=True"):
        omfs.import_(path, target)
    report = omfs.import_(path, target, bucket="omega")
    assert report["copied"] == 2 and report["objects"][0]["from_bucket"] == "prod"
    assert target.datasets.get("sales")["x"].tolist() == [0, 1]
    assert target.datasets.tags("sales") == {"prod": 1}
    assert target.models.get("model") == {"w": 2}
    assert "prod" not in target.buckets
    assert omfs.import_(path, target, bucket="omega")["copied"] == 0  # history kept
    omfs.import_(path, target, create_bucket=True)
    assert target["prod"].models.get("model@v1") == {"w": 1}
    assert fsck(target) == []
    if shared_root[1]:
        return
    out = subprocess.run(
        [om_script, "--root", shared_root[0], "--bucket", "team", "import", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0 and "--create-bucket" in out.stderr, out.stderr
    out = subprocess.run(
        [om_script, "--root", shared_root[0], "--bucket", "team", "import", str(path),
         "--create-bucket"], capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert target["team"].datasets.get("sales")["x"].tolist() == [0, 1]


# -- item 1: the target's payloads are never overwritten by unchecked bytes ---------------------
def test_a_payload_that_differs_from_the_log_is_refused_and_the_target_kept(shared_root, tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    targets = {case: open_ctx(shared_root, f"/{case}") for case in ("rot", "tamper")}
    for target in targets.values():
        omfs.sync(laptop, target)
    laptop.datasets.put(pd.DataFrame({"x": [2]}), "sales", append=True)
    laptop.models.put({"w": 3}, "model")
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales", "models/model"], path)
    v1_part = laptop.datasets.parts("sales@v1")[0]["file"]
    v3_model = laptop.models.metadata("model").info["payload"]

    def truncate_v1(p, data):  # bit rot in the source: the reproduction
        return data[:-10] if p.endswith(v1_part) else data

    def tamper_model(p, data):  # same size, other bytes
        return data[:-1] + bytes([data[-1] ^ 1]) if p.endswith(v3_model) else data

    cases = {"rot": (truncate_v1, v1_part, "sales"), "tamper": (tamper_model, v3_model, "model")}
    for case, (edit, member, refused_name) in cases.items():
        target = targets[case]
        before = tree(target)
        bad = rebuild(path, tmp_path / f"{case}.tar", edit=edit)
        with pytest.raises(IntegrityError, match=f"member .*{member}") as info:
            omfs.import_(bad, target)
        rows = {r["name"]: r for r in info.value.report["objects"]}
        assert rows[refused_name]["action"] == "refused" and member in str(info.value)
        assert all(r["action"] == "copy" for n, r in rows.items() if n != refused_name)
        # the refused object is exactly as it was; the target's v1 still loads
        assert {k: v for k, v in tree(target).items() if f"/{refused_name}/" in k} == {
            k: v for k, v in before.items() if f"/{refused_name}/" in k
        }
        assert target.datasets.get("sales@v1")["x"].tolist() == [0]
        assert target.models.get("model@v2") == {"w": 2}
        assert fsck(target) == []
        assert staging_left(target) == []
    assert targets["rot"].datasets.get("sales")["x"].tolist() == [0, 1]
    assert targets["rot"].models.get("model") == {"w": 3}
    assert targets["tamper"].datasets.get("sales")["x"].tolist() == [0, 1, 2]
    assert targets["tamper"].models.get("model") == {"w": 2}


def test_an_existing_payload_is_never_overwritten(tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    target = omfs.setup(tmp_path / "target")
    omfs.sync(laptop, target)
    part = laptop.datasets.parts("sales@v1")[0]["file"]
    key = f"omega/datasets/sales/_data/{part}"
    laptop.models.put({"w": 3}, "model")
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales", "models/model"], path)
    kept = target.storage.read_bytes(key)
    # the target lost its copy of the part; the bundle brings it back (checked against the log)
    os.unlink(target.storage.path(key))
    assert omfs.import_(path, target)["copied"] == 2
    assert target.storage.read_bytes(key) == kept
    # a file of that name in the target is left alone, whatever the bundle holds
    os.chmod(target.storage.path(key), 0o444)
    inode = os.stat(target.storage.path(key)).st_ino
    omfs.import_(path, target)
    assert os.stat(target.storage.path(key)).st_ino == inode


# -- item 2: hostile commits are refused per object ---------------------------------------------
def test_corrupt_or_hostile_commits_are_refused_per_object(shared_root, tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    fill(laptop)
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales", "models/model"], path)
    commit2 = "omega/datasets/sales/_log/00000000000000000002.json"

    def doc_edit(change):
        def edit(p, data):
            if p != commit2:
                return data
            doc = json.loads(data)
            change(doc)
            return json.dumps(doc).encode()

        return edit

    def passwd(doc):
        doc["actions"][0]["add_version"]["info"]["add"][0]["file"] = "../../etc/passwd"

    cases = {
        "not-json": (lambda p, d: b"{not json" if p == commit2 else d, "not JSON"),
        "other-object": (doc_edit(lambda d: d.update(name="other")), "names name 'other'"),
        "passwd": (doc_edit(passwd), "etc/passwd"),
        "format-3": (doc_edit(lambda d: d.update(format=3)), "log format 3"),
    }
    target = open_ctx(shared_root)
    for case, (edit, text) in cases.items():
        bad = rebuild(path, tmp_path / f"{case}.tar", edit=edit)
        with pytest.raises(IntegrityError, match=text) as info:
            omfs.import_(bad, target)
        assert commit2 in str(info.value), info.value
        rows = {r["name"]: r["action"] for r in info.value.report["objects"]}
        assert rows["sales"] == "refused" and rows["model"] in ("copy", "unchanged")
        assert target.datasets.list() == [] if case == "not-json" else True
        assert not target.datasets.exists("sales")
    assert target.models.get("model") == {"w": 2}
    assert omfs.import_(path, target)["copied"] == 1  # the good bundle still goes in
    assert target.datasets.get("sales")["x"].tolist() == [0, 1]
    assert fsck(target) == []


# -- staging inside the target --------------------------------------------------------------
def test_staging_leftovers_are_cleaned_by_the_next_import_and_gc(shared_root, tmp_path, exported):
    _, path = exported
    target = open_ctx(shared_root)
    storage = target.storage
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    import socket

    def leftover(folder, pid, started):
        owner = {"host": socket.gethostname(), "pid": int(pid), "started": started}
        storage.write_bytes(f"{bundles.STAGING}/{folder}/_owner.json", json.dumps(owner).encode())
        storage.write_bytes(f"{bundles.STAGING}/{folder}/1", b"x" * 1000)

    leftover("killed", dead, 1.0)
    leftover("running", os.getpid(), staging._process_started(os.getpid()))
    omfs.import_(path, target)
    assert {k.split("/")[1] for k in staging_left(target)} == {"running"}
    leftover("killed-again", dead, 1.0)
    target.gc(grace="1h")
    assert {k.split("/")[1] for k in staging_left(target)} == {"running"}
    assert target.datasets.list() == ["sales"] and bundles.STAGING not in target.buckets


def test_a_killed_import_that_left_no_owner_record_is_cleaned_by_its_name(
    shared_root, tmp_path, exported
):
    """CI's crash campaign: an import killed while it wrote its owner record left only the
    record's temporary file, so the next import took the folder for another machine's and
    kept it for a day. The folder's name says whose it is too."""
    import socket

    _, path = exported
    target = open_ctx(shared_root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    mine = round(staging._process_started(os.getpid()) * 1000)
    for name in (f"a-p{dead}-t1000@{host}", f"b-p{os.getpid()}-t{mine}@{host}"):
        target.storage.write_bytes(f"{bundles.STAGING}/{name}/._owner.json.x.tmp", b"{")
    omfs.import_(path, target)
    assert {k.split("/")[1] for k in staging_left(target)} == {f"b-p{os.getpid()}-t{mine}@{host}"}


def test_export_refuses_a_symlinked_payload(tmp_path):
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.models.put({"w": 1}, "model")
    payload = laptop.storage.path(
        f"omega/models/model/_data/{laptop.models.metadata('model').info['payload']}"
    )
    (tmp_path / "secret").write_bytes(b"secret")
    os.unlink(payload)
    os.symlink(tmp_path / "secret", payload)
    with pytest.raises(IntegrityError, match="is a symbolic link"):
        omfs.export(laptop, ["model"], tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


# -- the bundle's history must extend the target's (the attacker's report, items 1 and 3) -------
def test_a_checkpoint_that_forgets_versions_is_refused_on_import(shared_root, tmp_path):
    """The report: a bundle whose checkpoint held only v5 made the target forget v1-v4, and
    gc then deleted their payloads."""
    laptop = omfs.setup(tmp_path / "laptop")
    for v in range(1, 4):
        laptop.models.put({"w": v}, "model")
    target = open_ctx(shared_root)
    omfs.sync(laptop, target)
    for v in range(4, 7):
        laptop.models.put({"w": v}, "model")
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["models/model"], path)
    checkpoint = f"omega/models/model/_log/{5:020d}.checkpoint.json"

    def forget(p, data):
        if p != checkpoint:
            return data
        doc = json.loads(data)
        doc["state"]["records"] = [r for r in doc["state"]["records"] if r["v"] == 5]
        return json.dumps(doc).encode()

    bad = rebuild(path, tmp_path / "bad.tar", edit=forget)
    before = tree(target)
    with pytest.raises(IntegrityError, match="summarises") as info:
        omfs.import_(bad, target)
    assert checkpoint in str(info.value)
    assert info.value.report["objects"][0]["action"] == "refused"
    assert tree(target) == before
    target.gc(grace="0s", force=True)
    assert [m.version for m in target.models.versions("model")] == [1, 2, 3]
    assert target.models.get("model", version=1) == {"w": 1}
    assert omfs.import_(path, target)["copied"] == 1  # the good bundle still goes in
    assert [m.version for m in target.models.versions("model")] == list(range(1, 7))


def test_a_payload_missing_from_the_bundle_is_refused(shared_root, tmp_path):
    """A part the log names and the target lacks must come with the bundle; one the target
    holds need not."""
    laptop = omfs.setup(tmp_path / "laptop")
    laptop.datasets.put(pd.DataFrame({"x": [1]}), "sales")
    laptop.datasets.put(pd.DataFrame({"x": [2]}), "sales", append=True)
    part = laptop.datasets.parts("sales")[-1]["file"]
    path = tmp_path / "b.tar"
    omfs.export(laptop, ["sales"], path)
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop(MANIFEST))
    manifest["files"] = [f for f in manifest["files"] if not f["path"].endswith(part)]
    members = {k: v for k, v in members.items() if not k.endswith(part)}
    bad = plain_tar(tmp_path / "bad.tar", {**members, MANIFEST: json.dumps(manifest).encode()})
    target = open_ctx(shared_root)
    with pytest.raises(IntegrityError, match=f"{part} is missing from the bundle"):
        omfs.import_(bad, target)
    assert not target.datasets.exists("sales") and tree(target) == {}
    omfs.import_(path, target)  # the whole bundle goes in; then the short one is a no-op
    assert omfs.import_(bad, target)["objects"][0]["action"] == "unchanged"
    assert target.datasets.get("sales")["x"].tolist() == [1, 2]

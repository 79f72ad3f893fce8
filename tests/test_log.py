"""The commit log (format 2): costs that do not grow with history, and a log that is never
followed outside its object, whatever a tampered store says."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omfs
from omfs.errors import FormatError, IntegrityError, OmfsError
from omfs.objects import log as _log

WRITER = Path(__file__).parent / "helpers" / "omfs_writer.py"


def commit_key(store, name, seq):
    return f"{store.bucket}/{store.kind}/{name}/_log/{seq:020d}.json"


def frame(i, rows=10):
    return pd.DataFrame({"a": np.arange(i * rows, (i + 1) * rows), "s": [f"r{i}"] * rows})


# -- costs ----------------------------------------------------------------------------------
def _requests(counter, fn):
    _log.clear_cache()
    counter.reset()
    fn()
    return dict(counter.requests), counter.total


@pytest.mark.s3
def test_s3_requests_do_not_grow_with_versions(s3_counter, s3_root_factory, s3_options):
    """Latest, tag, exists: at most 8 requests; versions() and dropping one version at most
    20; and the same count at 10 versions as at 40."""
    counts = {}
    for n in (10, 40):
        om = omfs.setup(s3_root_factory(), storage_options=s3_options)
        for i in range(n):
            om.models.put({"i": i}, "m", tag="prod" if i == 2 else None)
        ops = {
            "metadata": lambda om=om: om.models.metadata("m"),
            "get": lambda om=om: om.models.get("m"),
            "get@tag": lambda om=om: om.models.get("m@prod"),
            "exists": lambda om=om: om.models.exists("m"),
            "versions": lambda om=om: om.models.versions("m"),
            "drop@v5": lambda om=om: om.models.drop("m@v5"),
        }
        counts[n] = {op: _requests(s3_counter, fn)[1] for op, fn in ops.items()}
    for op in ("metadata", "get", "get@tag", "exists"):
        assert counts[40][op] <= 8, (op, counts)
    for op in ("versions", "drop@v5"):
        assert counts[40][op] <= 20, (op, counts)
    # constant: the only difference is where the newest checkpoint happens to be
    for op in counts[10]:
        assert abs(counts[40][op] - counts[10][op]) <= _log.CHECKPOINT_INTERVAL, (op, counts)


@pytest.mark.s3
def test_s3_reads_use_known_sizes_and_skip_parts(s3_counter, s3_root, s3_options):
    """No HEAD for a size the log knows; one GET per part read; parts that cannot match a
    filter are not fetched at all."""
    om = omfs.setup(s3_root, storage_options=s3_options)
    for i in range(30):
        om.datasets.put(frame(i), "d", append=i > 0)
    by_method, total = _requests(s3_counter, lambda: om.datasets.get("d"))
    assert by_method.get("HEAD", 0) == 0, by_method
    assert total <= 30 + 10, by_method
    by_method, total = _requests(s3_counter, lambda: om.datasets.get("d", a__between=(151, 152)))
    assert total <= 10, by_method
    out = om.datasets.get("d", a__between=(151, 152))
    assert list(out["a"]) == [151, 152]


def test_commits_stay_small_as_history_grows(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    for i in range(60):
        om.datasets.put(frame(i), "d", append=i > 0)
    log = tmp_path / "ctx" / "omega" / "datasets" / "d" / "_log"
    commits = sorted(log.glob("0*[0-9].json"))
    sizes = [p.stat().st_size for p in commits]
    assert len(commits) == 60 and max(sizes) < 2048, sizes
    assert sizes[-1] <= sizes[1] * 1.1  # an append's commit does not grow with history
    checkpoints = sorted(log.glob("*.checkpoint.json"))
    assert len(checkpoints) == 2  # the two newest are kept
    assert json.loads(commits[-1].read_bytes())["format"] == 2
    assert b"\n" not in commits[-1].read_bytes()  # compact JSON


def test_stale_or_missing_hint_is_corrected_by_probing(ctx):
    for i in range(7):
        ctx.models.put({"i": i}, "m")
    hint = f"{ctx.bucket}/models/m/_log/_last.json"
    ctx.storage.write_bytes(hint, ctx.storage.read_bytes(hint).replace(b'"seq":7', b'"seq":2'))
    assert ctx.models.get("m") == {"i": 6}
    ctx.storage.delete([hint])
    assert ctx.models.metadata("m").version == 7 and len(ctx.models.versions("m")) == 7
    ctx.storage.write_bytes(hint, b"garbage")
    assert ctx.models.get("m") == {"i": 6}


# -- parts, statistics, compaction, chunks --------------------------------------------------
def test_filtered_get_never_opens_parts_that_cannot_match(ctx):
    """Parts whose statistics rule them out are not read: delete them and the filtered read,
    eager, chunked and lazy, still works."""
    for i in range(20):
        ctx.datasets.put(frame(i), "d", append=i > 0)
    parts = ctx.datasets.parts("d")
    assert [p["stats"]["a"] for p in parts[:2]] == [[0, 9, 0], [10, 19, 0]]
    assert parts[0]["stats"]["s"] == ["r0", "r0", 0]
    keep = {p["file"] for p in parts if p["stats"]["a"][0] <= 125 <= p["stats"]["a"][1]}
    assert len(keep) == 1
    ctx.storage.delete(
        f"{ctx.bucket}/datasets/d/_data/{p['file']}" for p in parts if p["file"] not in keep
    )
    assert list(ctx.datasets.get("d", a=125)["a"]) == [125]
    assert list(ctx.datasets.get("d", filters=[("a", ">=", 124), ("a", "<", 126)])["a"]) == [
        124,
        125,
    ]
    chunks = list(ctx.datasets.get("d", a__between=(121, 128), chunksize=3))
    assert [len(c) for c in chunks] == [3, 3, 2]
    if ctx.storage.protocol != "memory":
        lazy = ctx.datasets.get("d", lazy=True, a__gt=122, a__lt=125).compute()
        assert sorted(lazy["a"]) == [123, 124]
    with pytest.raises(IntegrityError, match="is missing"):
        ctx.datasets.get("d")  # a full read needs the deleted parts and says so


def test_statistics_of_nulls_strings_and_timestamps_never_skip_wrongly(ctx):
    a = pd.DataFrame(
        {
            "x": pd.array([1, None, 3], dtype="Int64"),
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
            "s": ["apple", "banana", None],
        }
    )
    b = pd.DataFrame(
        {
            "x": pd.array([None, None, None], dtype="Int64"),
            "t": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-03-03"], utc=True),
            "s": ["cherry", "date", "elder"],
        }
    )
    ctx.datasets.put(a, "n")
    ctx.datasets.put(b, "n", append=True)
    full = pd.concat([a, b], ignore_index=True)
    cases = [
        {"x__isnull": True},
        {"x__gt": 1},
        {"s": "date"},
        {"s__isnull": True},
        {"t__gte": pd.Timestamp("2024-03-02", tz="UTC")},
        {"t__lt": pd.Timestamp("2024-01-02", tz="UTC")},
    ]
    for kw in cases:
        got = ctx.datasets.get("n", **kw).reset_index(drop=True)
        ((key, value),) = kw.items()
        column, _, op = key.partition("__")
        series = full[column]
        compare = {
            "": operator.eq,
            "gt": operator.gt,
            "gte": operator.ge,
            "lt": operator.lt,
            "isnull": lambda s, _: s.isna(),
        }[op]
        mask = compare(series, value)
        want = full[mask.fillna(False).astype(bool)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=str(kw))


def test_nan_in_a_float_part_never_lets_a_filter_skip_it(ctx):
    import pyarrow as pa

    ctx.datasets.put(pa.table({"x": pa.array([1.0, float("nan"), 3.0])}), "f")
    ctx.datasets.put(pa.table({"x": pa.array([5.0, 6.0])}), "f", append=True)
    assert ctx.datasets.parts("f")[0]["stats"]["x"] == [None, None, 0]
    assert ctx.datasets.parts("f")[1]["stats"]["x"] == [5.0, 6.0, 0]
    assert ctx.datasets.get("f", x__isnull=True).num_rows == 1  # NaN counts as missing
    assert ctx.datasets.get("f", x__gt=4).num_rows == 2


def test_compact_keeps_rows_order_and_dtypes(ctx):
    df = pd.DataFrame(
        {
            "a": np.arange(30),
            "c": pd.Categorical(list("xyz") * 10, categories=list("xyzw")),
            "t": pd.date_range("2024-01-01", periods=30, freq="h", tz="Europe/Zurich"),
        }
    )
    for i in range(10):
        ctx.datasets.put(df.iloc[i * 3 : (i + 1) * 3], "c", append=i > 0)
    before = ctx.datasets.get("c")
    meta = ctx.datasets.compact("c")
    assert meta.version == 11 and meta["parts"] == 1 and meta["operation"] == "compact"
    pd.testing.assert_frame_equal(ctx.datasets.get("c"), before)
    pd.testing.assert_frame_equal(ctx.datasets.get("c@v10"), before)  # old versions readable
    pd.testing.assert_frame_equal(ctx.datasets.get("c@v3"), before.iloc[:9])
    assert ctx.datasets.compact("c").version == 11  # nothing left to merge: no new version
    ctx.datasets.put(df.iloc[:3], "c", append=True)
    assert len(ctx.datasets.get("c")) == 33
    # small target: groups of about two parts
    small = ctx.datasets.compact(
        ["c", "v12"][0], target_size=2 * ctx.datasets.parts("c")[-1]["size"]
    )
    assert small.version == 12  # v11's one big part + one small one cannot be merged below it
    ctx.datasets.drop("c@v11")
    pd.testing.assert_frame_equal(ctx.datasets.get("c@v10"), before)  # shared parts kept


def test_compact_keeps_appends_committed_meanwhile(ctx, monkeypatch):
    from omfs.objects.datasets.store import DatasetStore

    for i in range(4):
        ctx.datasets.put(frame(i), "d", append=i > 0)
    other = omfs.setup(ctx.root, storage_options=ctx.storage.options).datasets
    real = DatasetStore._merge_parts

    def merge_while_another_appends(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        other.put(frame(99), "d", append=True)
        return out

    monkeypatch.setattr(DatasetStore, "_merge_parts", merge_while_another_appends)
    meta = ctx.datasets.compact("d")
    assert meta.version == 6 and meta["parts"] == 2
    got = ctx.datasets.get("d")
    assert list(got["a"]) == [*range(40), *range(990, 1000)]


def _chunked_read_peak(root: Path, name: str, row_groups: int) -> int:
    """Peak Arrow memory of a fresh process that reads ``name`` in chunks of 100,000 rows."""
    script = f"""
import pyarrow as pa, omfs
om = omfs.setup({str(root)!r})
rows = sum(len(c) for c in om.datasets.get({name!r}, chunksize=100_000))
assert rows == {row_groups} * 1_000_000, rows
print(pa.default_memory_pool().max_memory())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_chunked_get_memory_does_not_grow_with_the_dataset(tmp_path):
    """Chunked reads of 4 and of 16 row groups (8 MB each) peak at about the same Arrow
    memory: a few row groups' worth, not the dataset."""
    om = omfs.setup(tmp_path / "ctx")
    for name, groups in (("small", 4), ("large", 16)):
        for i in range(groups // 4):  # appended parts of 4 row groups each
            df = pd.DataFrame({"a": np.arange(i * 4_000_000, (i + 1) * 4_000_000, dtype="int64")})
            om.datasets.put(df, name, append=i > 0, row_group_size=1_000_000)
    small = _chunked_read_peak(tmp_path / "ctx", "small", 4)
    large = _chunked_read_peak(tmp_path / "ctx", "large", 16)
    assert large < 32 * 2**20, f"peak {large / 2**20:.1f} MB for 128 MB of data"
    assert large < small * 1.25 + 2**20, (small, large)


# -- listing ----------------------------------------------------------------------------------
def test_list_narrows_to_a_literal_prefix(ctx):
    for name in ("team1/a", "team1/b", "team2/a", "other"):
        ctx.datasets.put(frame(0), name)
    assert ctx.datasets.list("team1/*") == ["team1/a", "team1/b"]
    assert ctx.datasets.list("team*") == ["team1/a", "team1/b", "team2/a"]
    assert ctx.datasets.list("*a") == ["team1/a", "team2/a"]
    assert ctx.datasets.list() == ["other", "team1/a", "team1/b", "team2/a"]


@pytest.mark.s3
def test_s3_listing_a_prefix_reads_only_that_prefix(s3_counter, s3_root, s3_options):
    om = omfs.setup(s3_root, storage_options=s3_options)
    index = f"{om.bucket}/datasets/_index"
    om.storage.fs.pipe({om.storage.path(f"{index}/big~{i:05d}"): b"" for i in range(1200)})
    om.datasets.put(frame(0), "small/x")
    _, everything = _requests(s3_counter, lambda: om.datasets.list())
    _, narrowed = _requests(s3_counter, lambda: om.datasets.list("small/*"))
    assert len(om.datasets.list()) == 1201
    assert everything >= 2 and narrowed == 1


# -- a log that cannot be followed outside its object ------------------------------------------
def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture
def hostile(tmp_path):
    """A local context with a dataset and a model, a neighbour object, another bucket and a
    file outside the root, all of which must stay untouched."""
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(frame(0), "d")
    om.datasets.put(frame(1), "d", append=True)
    om.models.put({"m": 1}, "m")
    om.models.put({"m": 2}, "m")
    om.datasets.put(frame(7), "neighbour")
    om["other"].models.put({"secret": True}, "s")
    (tmp_path / "outside.txt").write_text("do not touch")
    return om, tmp_path


def _protected(tmp_path: Path, store: str, name: str) -> dict[str, bytes]:
    own = (f"ctx/omega/{store}/{name}/", f"ctx/omega/{store}/_index/{name}")
    return {k: v for k, v in _tree(tmp_path).items() if not k.startswith(own)}


_HOSTILE_VALUES = [
    "../../../outside.txt",
    "../neighbour/_data/x.parquet",
    "/etc/passwd",
    "..",
    "",
    "a/../../b",
    "s3://other/x.parquet",
    "neighbour",
    "../../../other/models/s",
    -1,
    0,
    2**70,
    None,
    True,
    1.5,
    [],
    {},
    {"file": "../../x"},
    "0123456789abcdef0123456789abcdef.parquet",
]


def _paths(doc, prefix=()):
    """Every (path, value) of a JSON document, containers included."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    if not path:
        return value
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def _run_everything(om, store_name, name):
    store = getattr(om, store_name)
    target = om["promoted"]
    getter = store.get
    actions = [
        lambda: store.metadata(name),
        lambda: getter(name),
        lambda: getter(f"{name}@v1"),
        lambda: store.versions(name),
        lambda: store.exists(name),
        lambda: store.tags(name),
        lambda: store.fsck(name),
        lambda: store.update_attributes(name, {"x": 1}),
        lambda: store.promote(name, getattr(target, store_name), asname="copy"),
        lambda: store.drop(f"{name}@v1"),
        lambda: store.drop(name),
    ]
    for action in actions:
        with contextlib.suppress(OmfsError, FileNotFoundError):
            action()  # refusing is fine; what matters is what was touched


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_tampered_commits_never_touch_anything_outside_the_object(hostile, data):
    """Arbitrary edits of one commit (any field set to a hostile value, or removed): every
    operation reads, writes and deletes only inside the object, and fails, if at all, with
    an omfs error."""
    om, tmp_path = hostile
    store_name = data.draw(st.sampled_from(["datasets", "models"]))
    name = "d" if store_name == "datasets" else "m"
    scratch = tmp_path / f"run-{uuid.uuid4().hex}"
    shutil.copytree(tmp_path / "ctx", scratch / "ctx")
    (scratch / "outside.txt").write_text("do not touch")
    om = omfs.setup(scratch / "ctx")
    store = getattr(om, store_name)
    seq = data.draw(st.sampled_from([1, 2]))
    key = commit_key(store, name, seq)
    doc = json.loads(om.storage.read_bytes(key))
    paths = [p for p, _ in _paths(doc)]
    path = data.draw(st.sampled_from(paths))
    if path and data.draw(st.booleans()):
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
    else:
        doc = _set(doc, path, data.draw(st.sampled_from(_HOSTILE_VALUES)))
    om.storage.write_bytes(key, json.dumps(doc).encode())
    before = _protected(scratch, store_name, name)
    _run_everything(om, store_name, name)
    after = _protected(scratch, store_name, name)
    for k in list(after):
        if k.startswith("ctx/promoted/"):
            del after[k]  # the promotion target may be written, nothing else
    assert after == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("actions", 0, "add_version", "info", "payload"), "../../../outside.txt"),
        (("actions", 0, "add_version", "info", "payload"), "/etc/passwd"),
        (("name",), "../../outside"),
        (("bucket",), "other"),
        (("seq",), 1),
        (("actions", 0, "add_version", "v"), -3),
    ],
)
def test_a_tampered_commit_is_reported_as_corrupt_naming_the_file(hostile, field, value):
    om, tmp_path = hostile
    key = commit_key(om.models, "m", 2)
    doc = json.loads(om.storage.read_bytes(key))
    _set(doc, field, value)
    om.storage.write_bytes(key, json.dumps(doc).encode())
    before = _tree(tmp_path)
    with pytest.raises(IntegrityError, match=r"corrupt or was tampered with") as info:
        om.models.get("m")
    assert f"{2:020d}.json" in str(info.value)
    with pytest.raises(IntegrityError):
        om.models.drop("m")
    assert _tree(tmp_path) == before


def test_a_dataset_part_named_outside_is_refused(hostile):
    om, _ = hostile
    key = commit_key(om.datasets, "d", 2)
    doc = json.loads(om.storage.read_bytes(key))
    doc["actions"][0]["add_version"]["info"]["add"][0]["file"] = "../../neighbour/_data/x"
    om.storage.write_bytes(key, json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="plain file name"):
        om.datasets.get("d")


def test_unknown_formats_are_clear_errors(ctx):
    ctx.models.put({"a": 1}, "m")
    key = commit_key(ctx.models, "m", 1)
    doc = json.loads(ctx.storage.read_bytes(key))
    ctx.storage.write_bytes(key, json.dumps({**doc, "format": 3}).encode())
    with pytest.raises(FormatError, match="format 3 by a newer omfs"):
        ctx.models.get("m")
    ctx.storage.write_bytes(key, json.dumps({**doc, "format": "x"}).encode())
    with pytest.raises(IntegrityError, match="unknown format 'x'"):
        ctx.models.get("m")


# -- fsck --------------------------------------------------------------------------------------
def test_fsck_reports_missing_resized_and_altered_payloads(ctx):
    from omfs.ops.fsck import fsck

    for i in range(3):
        ctx.datasets.put(frame(i), "d", append=i > 0)
    ctx.models.put({"m": 1}, "m")
    ctx.datasets.put(b"raw", "r")
    assert fsck(ctx) == []
    parts = ctx.datasets.parts("d")
    data = f"{ctx.bucket}/datasets/d/_data"
    ctx.storage.delete([f"{data}/{parts[0]['file']}"])
    ctx.storage.write_bytes(f"{data}/{parts[1]['file']}", b"short")
    payload = f"{ctx.bucket}/models/m/_data/{ctx.models.metadata('m')['payload']}"
    blob = bytearray(ctx.storage.read_bytes(payload))
    blob[-5] ^= 0xFF
    ctx.storage.write_bytes(payload, bytes(blob))
    found = fsck(ctx)
    text = "\n".join(p["problem"] for p in found)
    assert f"part {parts[0]['file']} is missing" in text
    assert f"part {parts[1]['file']} has 5 bytes" in text
    assert "model 'm' version 1" in text and "does not match" in text
    assert {p["name"] for p in found} == {"d", "m"}


# -- crashes inside checkpoints and compaction -----------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "point", "after"),
    [
        ("append", "checkpoint", "1"),
        ("append", "checkpoint", "3"),
        ("append", "checkpoint-written", "1"),
        ("append", "checkpoint-written", "2"),
        ("compact", "compact-part", "1"),
        ("compact", "compact-commit", "1"),
        ("compact", "compact-commit", "2"),
    ],
)
def test_sigkill_inside_checkpoints_and_compaction(tmp_path, mode, point, after):
    root = tmp_path / "ctx"
    env = {**os.environ, "OMFS_TEST_KILL_AT": point, "OMFS_TEST_KILL_AFTER": after}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), "{}", "d", mode, "5", "40", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.close()
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=120) == -signal.SIGKILL, out
    committed = out.count("committed")
    om = omfs.setup(root)
    versions = om.datasets.versions("d")
    df = om.datasets.get("d")
    # a kill after a commit and before the writer said so leaves one version more
    assert df["id"].is_unique and len(df) in (5 * committed, 5 * committed + 5)
    for meta in versions:  # every version reads back whole
        assert len(om.datasets.get("d", version=meta.version)) == meta["rows"]
    assert om.datasets.list() == ["d"]
    assert not [p for p in (root / "omega" / "datasets" / "_index").iterdir() if p.name != "d"]
    # the log goes on: more appends and a compaction after the crash
    for i in range(7):
        om.datasets.put(
            frame(1000 + i, 5)
            .rename(columns={"a": "id"})
            .assign(gen=0, writer=9, payload=0.5)[["id", "gen", "writer", "payload"]],
            "d",
            append=True,
        )
    om.datasets.compact("d")
    assert len(om.datasets.get("d")) == len(df) + 35
    from omfs.ops.fsck import fsck

    assert fsck(om) == []


# -- the omfs 0.1 layout ----------------------------------------------------------------------
LEGACY = Path(__file__).parent / "fixtures" / "omfs-0.1-store"


@pytest.fixture
def legacy(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(LEGACY, root)
    return omfs.setup(root)


def _check_legacy_content(om):
    sales = om.datasets.get("sales")
    assert list(sales["a"]) == list(range(1, 10))
    assert list(sales["c"].cat.categories) == ["x", "y", "z"]
    assert str(sales["t"].dtype).startswith("datetime64")
    assert list(om.datasets.get("sales@prod")["a"]) == list(range(1, 7))
    assert om.datasets.tags("sales") == {"prod": 2}
    assert om.datasets.metadata("sales").attributes == {"owner": "ana"}
    assert [v.version for v in om.datasets.versions("team/other")] == [2]
    assert om.datasets.get("team/other")["x"].tolist() == [2.5]
    np.testing.assert_array_equal(om.datasets.get("arr"), np.arange(12).reshape(4, 3))
    assert om.datasets.get("blob") == b"raw bytes here"
    reg = om.models.metadata("reg")
    assert reg.version == 2 and reg.attributes == {"stage": "review"} and reg["fitted"] is True
    assert om.models.tags("reg") == {"prod": 2}
    assert len(om.models.read_payload(reg)) == reg["size"]  # verified, not unpickled
    assert om["other"].models.get("p") == {"plain": 1}
    assert om.datasets.list() == ["arr", "blob", "sales", "team/other"]


def test_stores_of_omfs_0_1_are_read_as_they_are(legacy):
    _check_legacy_content(legacy)
    with pytest.raises(FormatError, match="om upgrade"):
        legacy.datasets.put(frame(0), "sales", append=True)
    with pytest.raises(FormatError, match="om upgrade"):
        legacy.models.put({"x": 1}, "reg")


def test_upgrade_converts_in_place_and_keeps_everything(legacy):
    from omfs.ops.fsck import fsck, upgrade

    done = upgrade(legacy)
    assert {(d["bucket"], d["store"], d["name"]) for d in done} == {
        ("omega", "datasets", "sales"),
        ("omega", "datasets", "team/other"),
        ("omega", "datasets", "arr"),
        ("omega", "datasets", "blob"),
        ("omega", "models", "reg"),
        ("other", "models", "p"),
    }
    _check_legacy_content(legacy)
    assert upgrade(legacy) == []  # idempotent
    root = Path(legacy.root)
    assert not list(root.rglob("_versions"))
    assert fsck(legacy) == []
    legacy.datasets.put(
        frame(0).rename(columns={"a": "x"})[["x"]].astype(float), "team/other", append=True
    )
    assert len(legacy.datasets.get("team/other")) == 11
    assert legacy.models.put({"x": 1}, "reg").version == 3
    side = root / "omega" / "models" / "reg" / "_data"
    assert len(list(side.glob("*.json"))) == 3  # every payload has its sidecar now


def test_om_upgrade_and_fsck_from_the_command_line(tmp_path, om_script):
    root = tmp_path / "old"
    shutil.copytree(LEGACY, root)
    env = {**os.environ, "OMFS_ROOT": str(root)}
    run = lambda *a: subprocess.run([om_script, *a], capture_output=True, text=True, env=env)  # noqa: E731
    out = run("upgrade")
    assert out.returncode == 0, out.stderr
    assert "sales" in out.stdout and "team/other" in out.stdout
    out = run("upgrade")
    assert out.returncode == 0 and "nothing to upgrade" in out.stderr
    out = run("fsck")
    assert out.returncode == 0 and "no problems found" in out.stderr, out.stderr
    out = run("datasets", "compact", "sales")
    assert out.returncode == 0, out.stderr
    om = omfs.setup(root)
    assert om.datasets.metadata("sales")["parts"] == 1
    om.storage.delete([f"omega/datasets/sales/_data/{om.datasets.parts('sales')[0]['file']}"])
    out = run("--json", "fsck")
    assert out.returncode == 1 and "1 problem(s) found" in out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["name"] == "sales" and "is missing" in rows[0]["problem"]
    out = run("datasets", "compact", "nosuch")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "'nosuch'" in out.stderr
    out = run("datasets", "compact", "arr", "--target-size", "lots")
    assert out.returncode == 2 and "Invalid size 'lots'" in out.stderr


def test_layout_builds_and_parses_every_key_of_an_object():
    from omfs.objects.layout import ObjectPaths, parse_key

    paths = ObjectPaths("b", "datasets", "sales/q1")
    assert paths.data_key("x.bin") == "b/datasets/sales/q1/_data/x.bin"
    assert paths.index_key == "b/datasets/_index/sales~q1"
    assert paths.legacy_key(3) == "b/datasets/sales/q1/_versions/v000003.json"
    found = parse_key(paths.log_key(_log.commit_file(7)))
    assert found is not None and (found.paths, found.folder) == (paths, "_log")
    assert parse_key(paths.index_key) is None


def test_layout_keeps_the_two_newest_checkpoints():
    from omfs.objects.layout import keeps_checkpoint, kept_checkpoints, superseded_checkpoint

    interval = _log.CHECKPOINT_INTERVAL
    assert kept_checkpoints(2 * interval + 2) == [2 * interval, interval]
    assert kept_checkpoints(2 * interval + 2, base=interval) == [2 * interval]
    assert keeps_checkpoint(interval, 2 * interval + 2)
    assert not keeps_checkpoint(interval, 3 * interval)
    assert superseded_checkpoint(3 * interval) == interval
    assert superseded_checkpoint(interval) is None


def test_records_are_frozen():
    import dataclasses

    from omfs.objects.records import State

    with pytest.raises(dataclasses.FrozenInstanceError):
        State().seq = 3  # type: ignore[misc]

"""put replaces with a new version, append adds rows, old versions stay readable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omfs.errors import InvalidNameError, NotFoundError, SchemaMismatchError


def frame(start: int, n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(start, start + n), "x": np.arange(n) * 0.5})


def test_put_makes_versions_and_old_ones_stay_readable(ctx):
    ds = ctx.datasets
    assert ds.put(frame(0), "sales").version == 1
    assert ds.put(frame(100, 3), "sales").version == 2
    assert [m.version for m in ds.versions("sales")] == [1, 2]
    assert len(ds.get("sales")) == 3
    pd.testing.assert_frame_equal(ds.get("sales", version=1), frame(0))
    pd.testing.assert_frame_equal(ds.get("sales@v1"), frame(0))
    assert ds.metadata("sales").version == 2
    assert ds.metadata("sales", version=1)["rows"] == 5


def test_append_adds_rows_and_keeps_a_range_index(ctx):
    ds = ctx.datasets
    ds.put(frame(0), "log")
    meta = ds.put(frame(5), "log", append=True)
    assert meta["operation"] == "append" and meta["rows"] == 10
    out = ds.get("log")
    assert list(out["id"]) == list(range(10))
    pd.testing.assert_index_equal(out.index, pd.RangeIndex(10))
    assert len(ds.get("log", version=1)) == 5


def test_append_to_a_missing_dataset_creates_it(ctx):
    ctx.datasets.put(frame(0), "new", append=True)
    assert len(ctx.datasets.get("new")) == 5


def test_append_aligns_columns_by_name_and_merges_categories(ctx):
    ds = ctx.datasets
    ds.put(pd.DataFrame({"a": [1], "c": pd.Categorical(["x"], categories=["x", "y"])}), "cats")
    ds.put(pd.DataFrame({"c": pd.Categorical(["z"]), "a": [2]}), "cats", append=True)
    out = ds.get("cats")
    assert list(out.columns) == ["a", "c"]
    assert list(out["c"]) == ["x", "z"]
    assert list(out["c"].cat.categories) == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (pd.DataFrame({"id": ["a"], "x": [1.0]}), "column 'id' is int64 in the dataset but"),
        (pd.DataFrame({"id": [1]}), r"lacks columns \['x'\]"),
        (pd.DataFrame({"id": [1], "x": [1.0], "y": [2]}), r"new columns \['y'\].*new_columns=True"),
    ],
)
def test_append_with_another_schema_is_refused_and_changes_nothing(ctx, bad, message):
    ds = ctx.datasets
    ds.put(frame(0), "s")
    with pytest.raises(SchemaMismatchError, match=message):
        ds.put(bad, "s", append=True)
    assert [m.version for m in ds.versions("s")] == [1]
    data_files = ctx.storage.list_names(f"{ctx.bucket}/datasets/s/_data")
    assert len(data_files) == 1, "the refused append left a payload file behind"


def test_append_of_another_kind_is_refused(ctx):
    ctx.datasets.put(pd.Series([1, 2]), "s")
    with pytest.raises(SchemaMismatchError, match=r"holds a pandas\.Series"):
        ctx.datasets.put(pd.DataFrame({"a": [1]}), "s", append=True)


def test_append_numpy_rows(ctx):
    ctx.datasets.put(np.ones((2, 3)), "arr")
    ctx.datasets.put(np.zeros((4, 3)), "arr", append=True)
    out = ctx.datasets.get("arr")
    assert out.shape == (6, 3)
    assert ctx.datasets.metadata("arr")["shape"] == [6, 3]


def test_missing_objects_name_object_bucket_and_context(ctx):
    with pytest.raises(NotFoundError) as info:
        ctx.datasets.get("nope")
    text = str(info.value)
    assert "'nope'" in text and "'omega'" in text and ctx.root in text
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="at version 9"):
        ctx.datasets.get("nope@v9")
    ctx.datasets.put(frame(0), "there")
    with pytest.raises(FileNotFoundError, match="at version 9"):
        ctx.datasets.get("there", version=9)


def test_list_glob_and_hierarchical_names(ctx):
    ds = ctx.datasets
    for name in ["sales/2024/q1", "sales/2024/q2", "sales/2025/q1", "costs", "sales"]:
        ds.put(frame(0, 1), name)
    assert ds.list() == ["costs", "sales", "sales/2024/q1", "sales/2024/q2", "sales/2025/q1"]
    assert ds.list("sales/2024/*") == ["sales/2024/q1", "sales/2024/q2"]
    assert ds.list("*/q1") == ["sales/2024/q1", "sales/2025/q1"]
    assert ds.exists("sales/2024/q1") and not ds.exists("sales/2024")
    pd.testing.assert_frame_equal(ds.get("sales"), frame(0, 1))


def test_drop(ctx):
    ds = ctx.datasets
    ds.put(frame(0), "a")
    ds.put(frame(1), "a")
    assert ds.drop("a") is True
    assert not ds.exists("a") and ds.list() == []
    # the files stay for restore() until gc finds the drop older than its grace
    assert ctx.storage.list_names(f"{ctx.bucket}/datasets/a/_data") != []
    ctx.gc(grace=0, force=True)
    assert ctx.storage.list_names(f"{ctx.bucket}/datasets/a/_data") == []
    with pytest.raises(NotFoundError):
        ds.drop("a")
    assert ds.drop("a", force=True) is False
    ds.put(frame(0), "a")
    assert ds.metadata("a").version == 1


def test_drop_one_version_keeps_numbers(ctx):
    ds = ctx.datasets
    for i in range(3):
        ds.put(frame(i), "v")
    ds.drop("v@v2")
    assert [m.version for m in ds.versions("v")] == [1, 3]
    with pytest.raises(NotFoundError, match="dropped"):
        ds.get("v@v2")
    assert ds.put(frame(9), "v").version == 4


def test_attributes_tags_and_update(ctx):
    ds = ctx.datasets
    ds.put(frame(0), "t", attributes={"owner": "ana"}, tag="golden")
    ds.put(frame(1), "t")
    assert ds.metadata("t@golden").version == 1
    meta = ds.update_attributes("t", {"reviewed": True})
    assert meta.attributes == {"reviewed": True}
    assert ds.metadata("t").history[-1]["op"] == "update-attributes"
    assert ds.metadata("t@v1").attributes == {"owner": "ana"}


@pytest.mark.parametrize(
    "bad", ["", "../x", "/etc/passwd", "a//b", "a\\b", "a\x00b", "_x", "a@b@c"]
)
def test_bad_names_are_refused_before_any_io(ctx, bad):
    with pytest.raises(InvalidNameError):
        ctx.datasets.put(frame(0), bad)
    assert ctx.datasets.list() == []


def test_buckets_and_contexts_are_separate(ctx_factory):
    a, b = ctx_factory(), ctx_factory()
    a.datasets.put(frame(0), "shared-name")
    dev = a["dev"]
    with pytest.raises(NotFoundError, match=r"bucket 'dev' does not exist.*buckets are omega"):
        dev.datasets.list()  # a typo reads as an error naming what exists, not as empty
    dev.datasets.put(frame(1), "shared-name")  # writing creates the bucket
    assert a.datasets.get("shared-name")["id"].iloc[0] == 0
    assert dev.datasets.get("shared-name")["id"].iloc[0] == 1
    assert sorted(a.buckets) == ["dev", "omega"]
    assert a.bucket == "omega", "om['dev'] must leave the original unchanged"
    assert b.datasets.list() == [] and b.buckets == ["omega"]


def test_append_with_new_columns_when_asked(shared_root):
    """Issue 19.8: ``new_columns=True`` adds columns (earlier rows read them as null) through
    every read, compaction, promotion and sync; a type conflict is still refused."""
    import omfs

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    ds = om.datasets
    ds.put(frame(0, 3), "s", row_group_size=2)
    ds.put(frame(3, 2).assign(y=[7, 8]), "s", append=True, new_columns=True)
    with pytest.raises(SchemaMismatchError, match="column 'x' is double in the dataset"):
        ds.put(frame(5, 1).assign(x=["a"], y=[1], z=[1]), "s", append=True, new_columns=True)
    ds.put(frame(5, 1).assign(y=[9], z=["q"]), "s", append=True, new_columns=True)
    want = pd.DataFrame(
        {
            "id": np.arange(6),
            "x": [0.0, 0.5, 1.0, 0.0, 0.5, 0.0],
            "y": [np.nan] * 3 + [7.0, 8.0, 9.0],
            "z": [None] * 5 + ["q"],
        }
    )
    got = ds.get("s")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert list(ds.metadata("s")["columns"]) == ["id", "x", "y", "z"]
    assert ds.get("s", y__gt=7.5, columns=["id"])["id"].tolist() == [4, 5]
    assert ds.get("s", y__isnull=True).index.tolist() == [0, 1, 2]
    assert pd.concat(ds.get("s", chunksize=2, columns=["y"]))["y"].isna().sum() == 3
    assert ds.get("s", lazy=True, columns=["id", "y"], y__gt=7.5).compute()["id"].tolist() == [
        4,
        5,
    ]
    pd.testing.assert_frame_equal(
        ds.get("s", lazy=True).compute().reset_index(drop=True), want, check_dtype=False
    )
    assert ds.get("s@v1").columns.tolist() == ["id", "x"]  # the old version keeps its columns
    ds.compact("s")
    pd.testing.assert_frame_equal(ds.get("s"), got)
    ds.promote("s", om["prod"].datasets, create_bucket=True)
    pd.testing.assert_frame_equal(om["prod"].datasets.get("s"), got)
    copy = omfs.setup(f"{root}-copy", storage_options=options)
    omfs.sync(om, copy)
    pd.testing.assert_frame_equal(
        copy.datasets.get("s", y__gt=7.5), got[got.y > 7.5], check_dtype=False
    )


def test_cli_append_with_new_columns_needs_add_columns(cli, tmp_path):
    """Issue 19.8: without --add-columns the error names the new columns and the flag."""
    import omfs

    root = str(tmp_path / "root")
    (tmp_path / "a.csv").write_text("id,x\n1,0.5\n")
    (tmp_path / "b.csv").write_text("id,x,y\n2,1.5,7\n")
    assert cli("--root", root, "datasets", "put", "a.csv", "s").code == 0
    run = cli("--root", root, "datasets", "put", "b.csv", "s", "--append")
    assert run.code != 0 and "new columns ['y']" in run.stderr and "--add-columns" in run.stderr
    run = cli("--root", root, "datasets", "put", "b.csv", "s", "--add-columns")
    assert run.code != 0 and "--append" in run.stderr
    run = cli("--root", root, "datasets", "put", "b.csv", "s", "--append", "--add-columns")
    assert run.code == 0, run.stderr
    lines = cli("--root", root, "datasets", "get", "s", "-").stdout.splitlines()
    assert lines[:2] == ["id,x,y", "1,0.5,"] and lines[2].startswith("2,1.5,7")
    assert [m.version for m in omfs.setup(root).datasets.versions("s")] == [1, 2]

"""Column selection, filters (DNF and keywords), chunks and lazy reads."""

from __future__ import annotations

import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def sales(ctx):
    df = pd.DataFrame(
        {
            "a": np.arange(100),
            "b": np.where(np.arange(100) % 2 == 0, "even", "odd"),
            "c": [None if i % 10 == 0 else float(i) for i in range(100)],
        }
    )
    ctx.datasets.put(df, "sales", row_group_size=10)
    return ctx, df


def test_columns(sales):
    ctx, df = sales
    out = ctx.datasets.get("sales", columns=["b"])
    pd.testing.assert_frame_equal(out, df[["b"]])
    with pytest.raises(KeyError, match="no columns"):
        ctx.datasets.get("sales", columns=["zzz"])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"filters": [("a", ">", 95)]}, lambda d: d[d.a > 95]),
        ({"filters": [[("a", "<", 2)], [("a", ">", 97)]]}, lambda d: d[(d.a < 2) | (d.a > 97)]),
        ({"a__gt": 95}, lambda d: d[d.a > 95]),
        ({"a__gte": 95, "b": "odd"}, lambda d: d[(d.a >= 95) & (d.b == "odd")]),
        ({"a__lt": 3}, lambda d: d[d.a < 3]),
        ({"a__in": [1, 5, 7]}, lambda d: d[d.a.isin([1, 5, 7])]),
        ({"a__nin": list(range(3, 100))}, lambda d: d[d.a < 3]),
        ({"a__between": (10, 12)}, lambda d: d[d.a.between(10, 12)]),
        ({"c__isnull": True}, lambda d: d[d.c.isna()]),
        ({"c__isnull": False, "a__lt": 12}, lambda d: d[d.c.notna() & (d.a < 12)]),
        ({"b__startswith": "ev", "a__lt": 5}, lambda d: d[(d.b == "even") & (d.a < 5)]),
        ({"a__ne": 0, "a__lte": 2}, lambda d: d[(d.a != 0) & (d.a <= 2)]),
    ],
)
def test_filters(sales, kwargs, expected):
    ctx, df = sales
    out = ctx.datasets.get("sales", **kwargs)
    want = expected(df)
    assert list(out["a"]) == list(want["a"])
    pd.testing.assert_frame_equal(out.reset_index(drop=True), want.reset_index(drop=True))


def test_unknown_filter_column_is_explained(sales):
    ctx, _ = sales
    with pytest.raises(ValueError, match="names the column 'zz'"):
        ctx.datasets.get("sales", zz__gt=1)
    with pytest.raises(ValueError, match="Invalid filters"):
        ctx.datasets.get("sales", filters=[("a", "~~", 1)])


def test_chunks_have_exact_sizes_and_a_continuing_index(sales):
    ctx, df = sales
    chunks = list(ctx.datasets.get("sales", chunksize=30))
    assert [len(c) for c in chunks] == [30, 30, 30, 10]
    pd.testing.assert_frame_equal(pd.concat(chunks), df)
    filtered = list(ctx.datasets.get("sales", chunksize=4, a__lt=10, columns=["a"]))
    assert [len(c) for c in filtered] == [4, 4, 2]


def test_chunks_keep_a_named_index(ctx):
    df = pd.DataFrame({"v": range(10)}, index=pd.Index(range(100, 110), name="k"))
    ctx.datasets.put(df, "ix")
    chunks = list(ctx.datasets.get("ix", chunksize=3, columns=["v"]))
    pd.testing.assert_frame_equal(pd.concat(chunks), df)


def test_lazy_returns_dask_with_pushdown(sales):
    ctx, df = sales
    lazy = ctx.datasets.get("sales", lazy=True)
    assert isinstance(lazy, dd.DataFrame)
    assert int(lazy["a"].sum().compute()) == int(df["a"].sum())
    lazy = ctx.datasets.get("sales", lazy=True, columns=["a"], a__gt=89)
    assert sorted(lazy.compute()["a"]) == list(range(90, 100))


def test_dask_put_writes_partitions_and_roundtrips(ctx):
    df = pd.DataFrame({"a": np.arange(40), "s": [str(i) for i in range(40)]})
    ddf = dd.from_pandas(df, npartitions=4)
    meta = ctx.datasets.put(ddf, "big")
    assert meta["parts"] == 4 == len(ctx.datasets.parts("big")) and meta["rows"] == 40
    out = ctx.datasets.get("big")
    # exactly what the Dask DataFrame holds (Dask itself turns str into string[pyarrow])
    pd.testing.assert_frame_equal(out, ddf.compute(), check_index_type="equiv")
    back = ctx.datasets.get("big", lazy=True)
    assert back.npartitions >= 1 and int(back["a"].sum().compute()) == int(df["a"].sum())
    ctx.datasets.put(df.iloc[:5], "big", append=True)
    assert len(ctx.datasets.get("big")) == 45


def test_filtered_reads_keep_the_row_labels_of_an_unfiltered_read(shared_root):
    """Issue 19.5: a filtered get labels its rows as the unfiltered get does (as pandas
    boolean filtering keeps labels), across appended parts and row groups, in chunks too."""
    import omfs

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    df = pd.DataFrame({"a": np.arange(50), "b": np.arange(50) * 0.5})
    om.datasets.put(df.iloc[:20], "t", row_group_size=7)
    om.datasets.put(df.iloc[20:35], "t", append=True, row_group_size=4)
    om.datasets.put(df.iloc[35:], "t", append=True)
    whole = om.datasets.get("t")
    for kw, keep in [
        ({"a__gt": 17}, whole.a > 17),
        ({"a__in": [3, 19, 22, 40]}, whole.a.isin([3, 19, 22, 40])),
        ({"b__lt": 2, "columns": ["b"]}, whole.b < 2),
        ({"a__gt": 99}, whole.a > 99),
    ]:
        want = whole[keep] if "columns" not in kw else whole[keep][["b"]]
        pd.testing.assert_frame_equal(om.datasets.get("t", **kw), want)
        chunks = list(om.datasets.get("t", chunksize=4, **kw))
        assert [c.index.tolist() for c in chunks] == [
            want.index[i : i + 4].tolist() for i in range(0, len(want), 4)
        ]
    # one part stored with its own RangeIndex: the original labels, as pandas gives them
    iris = pd.DataFrame({"sl": np.linspace(4, 8, 20)}, index=pd.RangeIndex(100, 140, 2))
    om.datasets.put(iris, "iris/X")
    got = om.datasets.get("iris/X", sl__gt=7.5)
    pd.testing.assert_frame_equal(got, iris[iris.sl > 7.5])
    assert got.index.tolist() == [134, 136, 138]
    # a stored index keeps its own labels
    named = iris.rename_axis("k")
    om.datasets.put(named, "named")
    pd.testing.assert_frame_equal(om.datasets.get("named", sl__gt=7.5), named[named.sl > 7.5])


def test_dictionaries_of_numbers_read_as_stored(shared_root):
    """Issue 24.3: Parquet gives a dictionary of integers back as its values, and a scan
    cannot cast values to a dictionary: get and to_arrow_dataset read it, as it was put."""
    import pyarrow as pa

    import omfs

    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    k = pa.array([1, 2, 1]).dictionary_encode()
    table = pa.table({"k": k, "s": pa.array(["a", "b", "a"]).dictionary_encode()})
    om.datasets.put(table, "t")
    assert om.datasets.get("t").equals(table)
    assert om.datasets.get("t", k=1)["k"].to_pylist() == [1, 1]
    ds = om.datasets.to_arrow_dataset("t")
    assert ds.to_table()["k"].to_pylist() == [1, 2, 1]  # its values: typed as Parquet has it
    assert ds.schema.field("s").type == table.schema.field("s").type
    # a pandas categorical of integers: every read path, and compact, keep its categories
    df = pd.DataFrame({"c": pd.Categorical([1, 2, 1], categories=[2, 1, 3]), "x": [1.0, 2, 3]})
    om.datasets.put(df, "p")
    om.datasets.put(df, "p", append=True)
    whole = pd.concat([df, df], ignore_index=True)
    pd.testing.assert_frame_equal(om.datasets.get("p"), whole)
    pd.testing.assert_frame_equal(om.datasets.get("p", x__gt=1.5), whole[whole.x > 1.5])
    chunks = list(om.datasets.get("p", chunksize=4, c=1))
    pd.testing.assert_frame_equal(pd.concat(chunks), whole[whole.c == 1])
    om.datasets.compact("p")
    pd.testing.assert_frame_equal(om.datasets.get("p"), whole)


def test_cli_filtered_output_has_the_columns_of_an_unfiltered_one(cli, tmp_path):
    """Issue 19.5: the original row numbers stay out of files and head (no extra column)."""
    import omfs

    root = str(tmp_path / "root")
    om = omfs.setup(root)
    om.datasets.put(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}), "t")
    run = cli("--root", root, "datasets", "get", "t", "-", "--where", "a>1")
    assert run.stdout.splitlines() == ["a,b", "2,y", "3,z"], run.stderr
    run = cli("--root", root, "--json", "datasets", "head", "t", "--where", "a>1")
    assert json.loads(run.stdout) == [{"a": 2, "b": "y"}, {"a": 3, "b": "z"}]

"""Every kind of object comes back exactly as it was stored, on every backend."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest


def _frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "i": np.arange(n, dtype="int32"),
            "f": rng.random(n),
            "s": [f"s{i}" for i in range(n)],
            "cat": pd.Categorical(
                rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"], ordered=True
            ),
            "ts": pd.date_range("2024-03-30", periods=n, freq="h", tz="Europe/Zurich"),
            "nint": pd.array([None if i % 7 == 0 else i for i in range(n)], dtype="Int64"),
            "nbool": pd.array(
                [None if i % 5 == 0 else i % 2 == 0 for i in range(n)], dtype="boolean"
            ),
            "nstr": pd.array([None if i % 3 == 0 else str(i) for i in range(n)], dtype="string"),
            "td": pd.to_timedelta(np.arange(n), unit="s"),
        }
    )


FRAMES = {
    "plain": lambda: _frame(),
    "named_index": lambda: _frame().set_index("i"),
    "datetime_index_with_freq": lambda: _frame().set_index(
        pd.date_range("2020-01-01", periods=50, freq="D", name="day")
    ),
    "multiindex_rows": lambda: _frame().set_index(["cat", "i"]),
    "multiindex_columns": lambda: pd.DataFrame(
        np.arange(24.0).reshape(4, 6),
        columns=pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["x", "y"]),
    ),
    "int_column_names": lambda: pd.DataFrame(np.arange(12).reshape(4, 3)),
    "non_range_int_index": lambda: _frame().set_index(pd.Index(np.arange(50) * 3)),
    "empty": lambda: _frame().iloc[:0],
}


@pytest.mark.parametrize("kind", sorted(FRAMES))
def test_dataframe_roundtrip_is_exact(ctx, kind):
    df = FRAMES[kind]()
    meta = ctx.datasets.put(df, "frame")
    assert meta.kind == "pandas.DataFrame"
    assert meta["rows"] == len(df)
    pd.testing.assert_frame_equal(ctx.datasets.get("frame"), df)


@pytest.mark.parametrize("name", ["prices", None, 7])
def test_series_roundtrip_keeps_name_and_index(ctx, name):
    s = pd.Series(
        np.linspace(0, 1, 10),
        index=pd.date_range("2024", periods=10, freq="min", tz="UTC"),
        name=name,
    )
    ctx.datasets.put(s, "series")
    pd.testing.assert_series_equal(ctx.datasets.get("series"), s)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10),
        np.random.default_rng(1).random((20, 3)).astype("float32"),
        np.arange(60).reshape(5, 3, 4),
        np.array(["a", "bb", "ccc"]),
        np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"),
    ],
    ids=["1d", "2d-float32", "3d", "unicode", "datetime64"],
)
def test_numpy_roundtrip(ctx, array):
    ctx.datasets.put(array, "arr")
    out = ctx.datasets.get("arr")
    assert out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_arrow_table_roundtrip(ctx):
    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})
    ctx.datasets.put(table, "tbl")
    out = ctx.datasets.get("tbl")
    assert isinstance(out, pa.Table)
    assert out.equals(table)


def test_records_and_dicts_become_dataframes(ctx):
    records = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    ctx.datasets.put(records, "recs")
    pd.testing.assert_frame_equal(ctx.datasets.get("recs"), pd.DataFrame(records))
    ctx.datasets.put({"a": [1, 2]}, "cols")
    pd.testing.assert_frame_equal(ctx.datasets.get("cols"), pd.DataFrame({"a": [1, 2]}))


def test_raw_bytes_file_object_and_path(ctx, tmp_path):
    ctx.datasets.put(b"\x00\x01binary", "raw/bytes")
    assert ctx.datasets.get("raw/bytes") == b"\x00\x01binary"

    ctx.datasets.put(io.BytesIO(b"from a file object"), "raw/fileobj")
    assert ctx.datasets.get("raw/fileobj") == b"from a file object"

    src = tmp_path / "notes.txt"
    src.write_bytes(b"x" * 100_000)
    meta = ctx.datasets.put(str(src), "raw/path")
    assert meta.kind == "raw" and meta["filename"] == "notes.txt" and meta["bytes"] == 100_000
    out = ctx.datasets.get("raw/path", local_path=tmp_path / "copy.txt")
    assert Path(out).read_bytes() == src.read_bytes()
    assert b"".join(ctx.datasets.get("raw/path", chunksize=30_000)) == src.read_bytes()


def test_raw_with_table_options_is_refused(ctx):
    ctx.datasets.put(b"abc", "blob")
    with pytest.raises(TypeError, match="raw file"):
        ctx.datasets.get("blob", columns=["a"])


def test_string_that_is_not_a_file_is_refused(ctx):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ctx.datasets.put("does-not-exist.csv", "x")
    assert not ctx.datasets.exists("x")
    assert ctx.datasets.list() == []


def test_unsupported_objects_get_a_clear_error(ctx):
    with pytest.raises(TypeError, match=r"om\.models\.put"):
        ctx.datasets.put(object(), "x")
    with pytest.raises(ValueError, match="duplicate column names"):
        ctx.datasets.put(pd.DataFrame([[1, 2]], columns=["a", "a"]), "x")
    assert ctx.datasets.list() == []

"""Other engines read a version: the Arrow dataset of a version, DuckDB SQL over versions
(``om.sql``, ``om sql``), Polars, and the Delta bridge; on a local folder and S3 (moto)."""

from __future__ import annotations

import datetime as dt
import decimal
import os

import deltalake
import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

import omfs
from omfs.errors import IntegrityError, NotFoundError, QueryError, SyncError
from omfs.ops.sql_native import query_tree, scan_filter, source


def frame(start: int, n: int = 10) -> pd.DataFrame:
    ids = range(start, start + n)
    return pd.DataFrame({"id": list(ids), "region": ["EU" if i % 2 else "US" for i in ids]})


def three_versions(om) -> None:
    """v1 ids 0-9, v2 appends 10-19 (tagged prod), v3 appends 20-29."""
    om.datasets.put(frame(0), "sales")
    om.datasets.put(frame(10), "sales", append=True, tag="prod")
    om.datasets.put(frame(20), "sales", append=True)


def test_engines_read_exactly_the_rows_of_a_version(shared_root):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    three_versions(om)
    ds = om.datasets.to_arrow_dataset("sales@prod")
    assert isinstance(ds, pads.Dataset)
    assert sorted(ds.to_table()["id"].to_pylist()) == list(range(20))
    assert ds.schema.field("id").type == "int64"  # typed as stored
    at = om.datasets.metadata("sales@v2").created
    assert ds.count_rows() == om.datasets.to_arrow_dataset("sales", at=at).count_rows()
    # DuckDB
    answer = om.sql('select count(*) n, max(id) top from "sales@prod"')
    assert answer.to_dict("records") == [{"n": 20, "top": 19}]
    by_region = om.sql('select region, count(*) n from "sales@v2" group by 1 order by 1')
    assert by_region.to_dict("records") == [{"region": "EU", "n": 10}, {"region": "US", "n": 10}]
    assert om.sql("select count(*) n from sales", as_arrow=True).to_pylist() == [{"n": 30}]
    # Polars, with the filter pushed into the Arrow dataset
    lazy = pl.scan_pyarrow_dataset(om.datasets.to_arrow_dataset("sales@v2"))
    assert lazy.filter(pl.col("id") >= 15).collect()["id"].sort().to_list() == [15, 16, 17, 18, 19]
    polars = om.datasets.to_polars("sales@prod", lazy=False)
    assert isinstance(polars, pl.DataFrame) and polars.height == 20


def test_filters_skip_parts_that_cannot_match_locally(tmp_path):
    """Parts whose statistics cannot match are never opened: deleted, the query still runs."""
    om = omfs.setup(tmp_path / "ctx")
    for i in range(10):
        om.datasets.put(frame(i * 10), "sales", append=i > 0)
    parts = om.datasets.parts("sales")
    for part in parts[1:]:  # only the first part (ids 0-9) can match id < 5
        os.remove(om.datasets.storage.path(om.datasets.data_key("sales", part["file"])))
    assert om.sql("select count(*) n from sales where id < 5")["n"].tolist() == [5]
    lazy = om.datasets.to_polars("sales")
    assert lazy.filter(pl.col("id") < 3).collect().height == 3
    # a query that needs them opens them: a missing one is the error get() gives
    with pytest.raises(IntegrityError, match=r"payload '.*\.parquet' of dataset 'sales'.*missing"):
        om.sql("select count(*) from sales where id > 50")


@pytest.mark.s3
def test_filtered_query_on_s3_reads_only_matching_parts(s3_counter, s3_root, s3_options):
    om = omfs.setup(s3_root, storage_options=s3_options)
    for i in range(15):
        om.datasets.put(frame(i * 10), "sales", append=i > 0)
    s3_counter.reset()
    assert om.sql("select id from sales where id between 71 and 72")["id"].tolist() == [71, 72]
    filtered = dict(s3_counter.requests)
    s3_counter.reset()
    assert om.sql("select count(*) n from sales")["n"].tolist() == [150]
    full = dict(s3_counter.requests)
    assert filtered.get("HEAD", 0) == 0 and full.get("HEAD", 0) == 0, (filtered, full)
    assert sum(filtered.values()) <= 10, filtered  # the one part that can match + the log
    assert sum(full.values()) >= 15, full


def test_sql_into_stores_lineage(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    three_versions(om)
    om["other"].datasets.put(frame(100, 3), "extra")
    query = (
        'select region, count(*) n from "sales@prod" group by 1 '
        'union all select region, count(*) from "other/extra" group by 1'
    )
    meta = om.sql(query, into="summary")
    assert meta.name == "summary" and meta.version == 1
    lineage = om.datasets.metadata("summary").lineage["sql"]
    assert lineage["query"] == query
    read = {(r["table"], r["bucket"], r["name"], r["version"]) for r in lineage["read"]}
    assert read == {("sales@prod", "omega", "sales", 2), ("other/extra", "other", "extra", 1)}
    assert om.datasets.get("summary")["n"].sum() == 23


def test_unknown_names_and_bad_sql_are_one_line(tmp_path, cli):
    root = str(tmp_path / "ctx")
    om = omfs.setup(root)
    three_versions(om)
    with pytest.raises(NotFoundError, match=r"'nope'.*'sales'"):
        om.sql("select * from nope")
    with pytest.raises(NotFoundError, match=r"'sales@v9'"):
        om.sql('select * from "sales@v9"')
    with pytest.raises(QueryError, match="syntax error"):
        om.sql("selec * frm sales")
    # issue 24.2: what the dataset has when its tag or version does not exist
    with pytest.raises(
        NotFoundError, match=r"'sales' exists but has no tag 'nope'.*v1 to v3.*prod"
    ):
        om.sql('select * from "sales@nope"')
    with pytest.raises(NotFoundError, match=r"'sales' exists but has no version 9; .*v1 to v3"):
        om.sql('select * from "sales@v9"')
    with pytest.raises(QueryError, match=r'near "@".*double quotes: "sales@v2"\.$'):
        om.sql("select id / 2 from sales@v2 where id > 1")
    with pytest.raises(QueryError, match=r'double quotes: "other/extra"'):
        om.sql("select * from other/extra")
    with pytest.raises(QueryError, match="nocolumn"):
        om.sql("select nocolumn from sales")
    for query in (
        "select * from nope",
        "selec 1",
        "select nocolumn from sales",
        'select * from "sales@nope"',
        "select * from sales@v2",
    ):
        result = cli("--root", root, "sql", query)
        assert result.code == 1 and result.stdout == ""
        assert result.stderr.startswith("om: error: ") and result.stderr.count("\n") == 1


def test_cli_sql_formats_and_files(tmp_path, cli):
    root = str(tmp_path / "ctx")
    three_versions(omfs.setup(root))
    query = 'select region, count(*) n from "sales@prod" group by 1 order by 1'
    piped = cli("--root", root, "sql", query)
    assert piped.stdout.splitlines() == ["region\tn", "EU\t10", "US\t10"]
    assert cli("--root", root, "sql", query, "--format", "csv").stdout.splitlines()[1] == "EU,10"
    assert '"n":10' in cli("--root", root, "sql", query, "--format", "jsonl").stdout
    assert cli("--root", root, "--json", "sql", query).stdout.startswith('[{"region": "EU"')
    written = cli("--root", root, "sql", query, "-o", "out.parquet")
    assert written.code == 0 and pd.read_parquet(tmp_path / "out.parquet")["n"].sum() == 20
    assert cli("--root", root, "sql", query, "-o", "out.parquet").code == 1  # exists
    stored = cli("--root", root, "sql", query, "--into", "summary")
    assert stored.code == 0 and stored.stdout.split("\t")[:2] == ["summary", "v1"]
    assert cli("--root", root, "sql", query, "--format", "parquet").code == 2


def test_delta_history_matches_versions_and_reruns_are_incremental(shared_root, tmp_path):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    three_versions(om)
    om.datasets.put(frame(50, 5), "sales")  # v4 replaces
    # the source on each backend; the Delta table in a folder (moto does not answer the
    # LIST requests delta-rs sends: see docs/reference/benchmarks.md)
    url, delta_options = str(tmp_path / "delta"), None
    report = om.datasets.export_delta("sales", url, storage_options=delta_options)
    assert report.exported == [1, 2, 3, 4] and report.delta_version == 3
    om.datasets.put(frame(60, 5), "sales", append=True)  # v5
    again = om.datasets.export_delta("sales", url, storage_options=delta_options)
    assert again.exported == [5] and again.delta_version == 4
    assert om.datasets.export_delta("sales", url, storage_options=delta_options).exported == []
    history = deltalake.DeltaTable(url, storage_options=delta_options).history()
    assert [h["omfs.version"] for h in reversed(history)] == ["1", "2", "3", "4", "5"]
    modes = [h["operationParameters"]["mode"] for h in reversed(history)]
    assert modes == ["Overwrite", "Append", "Append", "Overwrite", "Append"]
    for k in range(5):
        table = deltalake.DeltaTable(url, version=k, storage_options=delta_options)
        rows = sorted(table.to_pyarrow_table()["id"].to_pylist())
        assert rows == sorted(om.datasets.get(f"sales@v{k + 1}")["id"]), k
    om.datasets.put(frame(0), "other")
    with pytest.raises(SyncError, match="diverged"):
        om.datasets.export_delta("other", url, storage_options=delta_options)


def test_cli_export_delta(tmp_path, cli):
    root = str(tmp_path / "ctx")
    three_versions(omfs.setup(root))
    url = str(tmp_path / "delta")
    first = cli("--root", root, "datasets", "export-delta", "sales", url)
    assert first.code == 0 and "v1..v3" in first.stderr
    again = cli("--root", root, "--json", "datasets", "export-delta", "sales", url)
    assert '"exported": []' in again.stdout and '"delta_version": 2' in again.stdout


def test_local_sql_reads_exactly_the_parts_of_the_version_with_new_columns(tmp_path):
    """On a local folder DuckDB reads the version's part files itself: exactly those of
    ``@v2`` after v3 appended, columns added later as null in older parts."""
    om = omfs.setup(tmp_path / "ctx")
    three_versions(om)
    om.datasets.put(frame(30).assign(extra=1.5), "sales", append=True, new_columns=True)
    con = duckdb.connect()
    source(con, "sales@v2", om.datasets, "sales", 2, None).attach(con)
    (view,) = con.sql("select sql from duckdb_views() where view_name = 'sales@v2'").fetchall()
    v2_files = om.datasets.to_arrow_dataset("sales@v2").files
    assert "read_parquet" in view[0] and all(f in view[0] for f in v2_files)
    v3_only = set(om.datasets.to_arrow_dataset("sales@v3").files) - set(v2_files)
    assert v3_only and not any(f in view[0] for f in v3_only)
    assert sorted(om.sql('select id from "sales@v2"')["id"]) == list(range(20))
    latest = om.sql("select * from sales order by id")
    assert list(latest.columns) == ["id", "region", "extra"] and len(latest) == 40
    assert latest["extra"].isna().sum() == 30 and latest["extra"].iloc[-1] == 1.5
    early = om.sql("select * from sales where id < 5")  # only a part from before 'extra'
    assert list(early.columns) == ["id", "region", "extra"] and early["extra"].isna().all()
    # a filter the statistics answer reads only the part that can match
    query = "select id from sales s where s.id between 31 and 32 and region <> 'x'"
    dataset = om.datasets.to_arrow_dataset("sales")
    where = scan_filter(query_tree(con, query), "sales", dataset.schema)
    assert len(dataset.files) == 4 and len(list(dataset.get_fragments(where))) == 1
    assert om.sql(query)["id"].tolist() == [31, 32]


def test_local_sql_answers_with_the_types_of_the_arrow_dataset(tmp_path):
    """DuckDB's own Parquet reader answers with the types the version's Arrow dataset
    gives DuckDB (timestamps in s and ms, time zones, categoricals, decimals, dates)."""
    om = omfs.setup(tmp_path / "ctx")
    table = pa.table(
        {
            "s": pa.array([1, 2], pa.timestamp("s")),
            "ms": pa.array([1, 2], pa.timestamp("ms", "Europe/Paris")),
            "ns": pa.array([1, 2], pa.timestamp("ns")),
            "cat": pa.array(["a", "b"]).dictionary_encode(),
            "dec": pa.array([decimal.Decimal("1.25")] * 2, pa.decimal128(10, 2)),
            "day": pa.array([dt.date(2024, 1, 1)] * 2),
            "small": pa.array([1, 2], pa.int8()),
        }
    )
    om.datasets.put(table, "zoo")
    om.datasets.put(
        table.append_column("late", pa.array([1.0, 2.0])), "zoo", append=True, new_columns=True
    )
    om.datasets.put(pa.table({"took": pa.array([1, 2], pa.duration("s"))}), "durations")
    for name in ("zoo", "durations"):  # durations: Parquet keeps integers, so Arrow reads them
        con = duckdb.connect()
        con.register(name, om.datasets.to_arrow_dataset(name, strings_as_dictionary=True))
        expected = con.sql(f"select * from {name}").to_arrow_table()
        answer = om.sql(f"select * from {name}", as_arrow=True)
        assert answer.schema == expected.schema and answer.equals(expected), name


def test_parts_pruned_locally_answer_as_the_arrow_dataset(tmp_path):
    """The parts omfs leaves out by a query's WHERE never change its answer."""
    om = omfs.setup(tmp_path / "ctx")
    for i in range(6):
        part = frame(i * 10).assign(x=i + 0.5)
        om.datasets.put(part, "t", append=i > 0)
    con = duckdb.connect()
    con.register("t", om.datasets.to_arrow_dataset("t"))
    for query in (
        "select count(*) n from t where id < 15 or x > 4.0",
        "select count(*) n from t where id in (3, 55, 99) and 20 > id",
        "select count(*) n from t a where a.id between 11 and 12 and region = 'EU'",
        "select count(*) n from t where x = 2 or id > 1e9",  # no part can match
        "select count(*) n from t, t u where t.id = u.id and t.id < 5",
        "select count(*) n from (select * from t where id < 5 union all "
        "select * from t where id > 55)",
        "select count(*) n from t where ID < 7 or region like 'U%'",
        "select id * 2 as id2 from t where id2 < 10 order by 1",
    ):
        expected = con.sql(query).df()
        assert om.sql(query).equals(expected), query


def test_delta_refusals_are_one_line(tmp_path, cli):
    """A file where the table should be, and a table omfs did not write: one line each."""
    om = omfs.setup(tmp_path / "ctx")
    three_versions(om)
    (tmp_path / "a-file").write_text("x")
    for url in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        with pytest.raises(SyncError, match="Cannot export to the Delta table") as caught:
            om.datasets.export_delta("sales", str(url))
        assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    out = cli("--root", om.root, "datasets", "export-delta", "sales", str(tmp_path / "a-file"))
    assert out.code == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    foreign = str(tmp_path / "foreign")
    deltalake.write_deltalake(foreign, pd.DataFrame({"id": [1]}))
    with pytest.raises(SyncError, match="it was not written by omfs's export_delta") as caught:
        om.datasets.export_delta("sales", foreign)
    assert "None" not in str(caught.value)


def test_a_dropped_version_is_a_plain_not_found_error(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    three_versions(om)
    om.datasets.prune("sales", keep_last=1)
    with pytest.raises(NotFoundError) as caught:
        om.datasets.to_arrow_dataset("sales@v1")
    assert type(caught.value).__name__ == "NotFoundError"
    assert repr(caught.value).startswith("NotFoundError(")

"""Issue 24.1: ``om.sql`` reads the datasets a query names and nothing else: no other file,
no other version's parts, no writing, no extensions, no other database, no settings."""

from __future__ import annotations

import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidNameError, QueryError


def frame(start: int, n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "qty": [i % 7 for i in range(n)]})


def test_queries_read_only_the_datasets_they_name(shared_root, tmp_path):
    root, options = shared_root
    om = omfs.setup(root, storage_options=options)
    om.datasets.put(frame(0), "sales")
    om.datasets.put(frame(10), "sales", append=True)
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    out = tmp_path / "out.csv"
    om.sql("select count(*) from sales")  # the database the next queries read in
    refused = [
        f"select * from read_csv('{secret}')",
        f"select count(*) from sales, read_text('{secret}')",
        f"copy (select * from sales) to '{out}'",
        "install httpfs",
        "load httpfs",
        f"attach '{tmp_path / 'other.duckdb'}'",
        "set enable_external_access = true",
        "set threads = 1",
    ]
    if om.datasets.storage.is_local:  # the context's parts, bypassing the versions
        refused.append(f"select * from read_parquet('{tmp_path}/**/*.parquet')")
    for query in refused:
        with pytest.raises(QueryError, match=r"^om.sql reads only the datasets the query names"):
            om.sql(query)
    assert not out.exists() and not (tmp_path / "other.duckdb").exists()
    with pytest.raises(InvalidNameError, match=r"which is no dataset.*put it as a dataset first"):
        om.sql(f"select * from '{secret}'")  # a file's path as a table: no dataset
    assert om.sql("select count(*) n from sales")["n"].tolist() == [20]


def test_a_query_cannot_read_parts_of_versions_it_does_not_name(tmp_path, cli):
    root = tmp_path / "ctx"
    om = omfs.setup(root)
    om.datasets.put(frame(0), "sales")
    om.datasets.put(frame(10), "sales", append=True)
    v1_files = om.datasets.to_arrow_dataset("sales@v1").files
    v2_only = [f for f in om.datasets.to_arrow_dataset("sales@v2").files if f not in v1_files]
    assert om.sql("select count(*) n from sales")["n"].tolist() == [20]  # every part, v2
    sneaky = f"""select count(*) from "sales@v1", read_parquet('{v2_only[0]}')"""
    with pytest.raises(QueryError, match="reads only the datasets"):
        om.sql(sneaky)
    result = cli("--root", str(root), "sql", f"copy (select 1) to '{tmp_path / 'x.csv'}'")
    assert result.code == 1 and result.stderr.count("\n") == 1
    assert "om datasets put PATH NAME" in result.stderr

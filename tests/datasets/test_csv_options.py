"""CSV import of European files: `--decimal ,` (numbers, not text), `--date-format` (and
dates whose day and month could swap refused, naming it), and a `--dtype` that a value does
not fit blamed on that value's line, also in the first row; Python's `put_file` keywords."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import omfs
from omfs.errors import TableFileError

EUROPEAN = "id;age;ratio;when\n1;41;0,038;01/03/2024 00:00\n2;37;1,5;02/03/2024 10:30\n"


@pytest.fixture
def om(shared_root, cli, tmp_path):
    """`om ARGS` with a `;`-separated file of decimal commas and day-first dates at hand, on
    a local folder and on S3; ``om.ds`` is the context's datasets."""
    root, options = shared_root
    (tmp_path / "eu.csv").write_text(EUROPEAN)
    env = {"OMFS_ROOT": root, "OMFS_STORAGE_OPTIONS": json.dumps(options) if options else None}

    def run(*args, code=0):
        out = cli(*args, env=env)
        assert out.code == code, out.stderr
        return out

    run.ds = omfs.setup(root, storage_options=options).datasets
    return run


def _error(out) -> str:
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("om: error: "), out.stderr
    return lines[0][len("om: error: ") :]


def test_decimal_comma_and_date_format(om):
    om("datasets", "put", "eu.csv", "plain")
    assert str(om.ds.get("plain")["ratio"].dtype) != "float64"  # text without --decimal
    om(
        "datasets", "put", "eu.csv", "eu", "--decimal", ",",
        "--parse-dates", "when", "--date-format", "%d/%m/%Y %H:%M",
    )  # fmt: skip
    df = om.ds.get("eu")
    assert df["ratio"].dtype == "float64" and df["ratio"].tolist() == [0.038, 1.5]
    assert df["when"].tolist() == [
        pd.Timestamp("2024-03-01 00:00"),  # 1 March: day first, as the format says
        pd.Timestamp("2024-03-02 10:30"),
    ]


def test_ambiguous_dates_are_refused_naming_date_format(om):
    message = _error(om("datasets", "put", "eu.csv", "eu", "--parse-dates", "when", code=1))
    assert message.startswith("eu.csv, line 2: column 'when' has '01/03/2024 00:00'")
    assert "day and month could be either way round" in message
    assert "--date-format '%d/%m/%Y %H:%M' (day first)" in message
    assert "--date-format '%m/%d/%Y %H:%M' (month first)" in message
    assert not om.ds.exists("eu")


def test_dtype_blames_the_value_that_fails_even_in_the_first_row(om, tmp_path):
    (tmp_path / "ages.csv").write_text("id;age\n1;x41\n2;37\n")
    message = _error(om("datasets", "put", "ages.csv", "a", "--dtype", "age=float64", code=1))
    assert message.startswith("ages.csv, line 2: column 'age' has 'x41', which is not double")
    assert "later value" not in message
    message = _error(om("datasets", "put", "eu.csv", "a", "--dtype", "ratio=float64", code=1))
    assert "has '0,038'" in message and "--decimal ," in message
    assert not om.ds.exists("a")


def test_python_put_file_takes_the_same_options(tmp_path):
    (tmp_path / "eu.csv").write_text(EUROPEAN)
    ds = omfs.setup(tmp_path / "ctx").datasets
    meta = ds.put_file(
        tmp_path / "eu.csv", "eu", decimal=",", parse_dates=["when"], date_format="%d/%m/%Y %H:%M"
    )
    df = ds.get("eu")
    assert meta.version == 1 and df["ratio"].tolist() == [0.038, 1.5]
    assert df["when"][0] == pd.Timestamp("2024-03-01")
    with pytest.raises(TableFileError, match="either way round"):
        ds.put_file(tmp_path / "eu.csv", "eu2", parse_dates=["when"])
    with pytest.raises(TableFileError, match="cannot be the decimal point"):
        (tmp_path / "c.csv").write_text("a,b\n1,2\n")
        ds.put_file(tmp_path / "c.csv", "c", decimal=",")

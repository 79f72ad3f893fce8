"""`om runtime result ID` of a huge value reads only the rows it shows; `--output FILE`
writes all of it, streamed; the Python API still returns the whole value. A planted
23 KB file of 5 million zeros once took 34 s and 1 GB to print."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import omfs
from omfs.compute.records import encode_value, finished_doc, write_record

ZEROS = "20260101-000000000-0000005e"
SMALL = "20260101-000000000-00000001"
PLAIN = "20260101-000000000-00000002"
BIG_PLAIN = "20260101-000000000-00000003"
N = 5_000_000


def _store(om, task_id, value, action="predict"):
    """The records a worker writes for a task that returned ``value``."""
    doc, parquet = encode_value(value)
    if parquet is not None:
        om.storage.write_bytes(f"_tasks/{task_id}.result.parquet", parquet)
    about = {"object": "models/m@v1", "action": action}
    write_record(om.storage, task_id, "finished", finished_doc("succeeded", result=doc, **about))


def _plant_zeros(om):
    """The attacker's file: 5 million zeros, zstd, ~23 KB, as a 1-d array result."""
    out = io.BytesIO()
    pq.write_table(pa.table({"0": np.zeros(N, dtype="int64")}), out, compression="zstd")
    om.storage.write_bytes(f"_tasks/{ZEROS}.result.parquet", out.getvalue())
    doc = {"format": "parquet", "type": "ndarray", "ndim": 1}
    write_record(om.storage, ZEROS, "finished", finished_doc("succeeded", result=doc))


@pytest.fixture
def rows_read(monkeypatch):
    """How many rows pyarrow decoded for the command (whole-file reads refused)."""
    counted = [0]
    batches = pq.ParquetFile.iter_batches

    def iter_batches(self, *args, **kwargs):
        for batch in batches(self, *args, **kwargs):
            counted[0] += batch.num_rows
            yield batch

    def whole(self, *args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)
    monkeypatch.setattr(pq.ParquetFile, "read", whole)
    return counted


def test_a_huge_result_previews_its_first_rows_only(om_cli, rows_read):
    om, om_ = om_cli
    _plant_zeros(om)
    out = om_("runtime", "result", ZEROS)
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines() == ["result", *["0"] * 10]
    assert out.stderr.strip() == (
        f"5,000,000 rows x 1 columns; `om runtime result {ZEROS} --output FILE.parquet` "
        "(or .csv) writes all of it"
    )
    assert rows_read[0] == 10
    shown = json.loads(om_("--json", "runtime", "result", ZEROS).stdout)
    assert shown["truncated"] is True and (shown["rows"], shown["columns"]) == (N, 1)
    assert shown["value"] == [0] * 10 and "--output" in shown["note"]
    assert rows_read[0] == 20


def test_output_writes_every_row_and_never_overwrites(om_cli, tmp_path):
    om, om_ = om_cli
    _plant_zeros(om)
    target = tmp_path / "all.parquet"
    assert om_("runtime", "result", ZEROS, "--output", str(target)).code == 0
    assert pq.ParquetFile(target).metadata.num_rows == N
    again = om_("runtime", "result", ZEROS, "--output", str(target))
    assert again.code == 1 and again.stderr.strip() == (
        f"om: error: {target} exists; pass --force to overwrite it"
    )
    frame = pd.DataFrame({"a": np.arange(2000), "b": np.arange(2000) * 0.5})
    _store(om, SMALL, frame.set_axis(np.arange(2000) + 7))
    assert om_("runtime", "result", SMALL, "-o", str(target), "--force").code == 0
    assert pq.read_table(target).num_rows == 2000
    csv = tmp_path / "all.csv"
    assert om_("runtime", "result", SMALL, "-o", str(csv)).code == 0
    back = pd.read_csv(csv)
    assert list(back.columns) == ["a", "b", "index"] and back["index"].iloc[0] == 7
    assert back[["a", "b"]].equals(frame)
    wrong = om_("runtime", "result", SMALL, "-o", str(tmp_path / "x.json"))
    assert wrong.code == 1 and "write it as .parquet or .csv" in wrong.stderr
    assert not (tmp_path / "x.json").exists()
    # the path given is named, not the temporary file beside it (attacker's finding)
    (tmp_path / "outd.parquet").mkdir()
    folder = om_("runtime", "result", SMALL, "-o", str(tmp_path / "outd.parquet"), "--force")
    assert folder.code == 1 and "outd.parquet is a folder" in folder.stderr
    missing = tmp_path / "no" / "such.csv"
    gone = om_("runtime", "result", SMALL, "-o", str(missing))
    assert gone.code == 1 and f"cannot write {missing}: No such file" in gone.stderr
    assert ".tmp" not in folder.stderr + gone.stderr


def test_a_frame_preview_and_small_values_as_before(om_cli):
    om, om_ = om_cli
    frame = pd.DataFrame({"x": np.arange(1001.0)})
    _store(om, SMALL, frame)
    lines = om_("runtime", "result", SMALL).stdout.splitlines()
    assert lines == ["index\tx", *(f"{i}\t{float(i)}" for i in range(10))]
    _store(om, SMALL, frame.head(1000))  # at most 1,000 rows: whole, as ever
    out = om_("runtime", "result", SMALL)
    assert out.stdout.splitlines() == ["index\tx", *(f"{i}\t{float(i)}" for i in range(1000))]
    assert out.stderr == ""
    assert len(json.loads(om_("--json", "runtime", "result", SMALL).stdout)["x"]) == 1000
    _store(om, PLAIN, {"score": 0.5})
    assert json.loads(om_("--json", "runtime", "result", PLAIN).stdout) == {"score": 0.5}


def test_a_plain_value_over_a_megabyte_is_cut(om_cli, tmp_path):
    om, om_ = om_cli
    _store(om, BIG_PLAIN, list(range(300_000)))  # ~2 MB of JSON text
    out = om_("runtime", "result", BIG_PLAIN)
    assert out.stdout.splitlines() == ["predict", *map(str, range(10))]
    assert out.stderr.startswith("300,000 items (cut at 1 MB); ") and "FILE.json" in out.stderr
    shown = json.loads(om_("--json", "runtime", "result", BIG_PLAIN).stdout)
    assert shown["truncated"] is True and shown["items"] == 300_000
    target = tmp_path / "all.json"
    assert om_("runtime", "result", BIG_PLAIN, "-o", str(target)).code == 0
    assert json.loads(target.read_text()) == list(range(300_000))


def test_the_api_returns_the_whole_value_and_a_lying_file_is_one_line(om_cli):
    om, om_ = om_cli
    _plant_zeros(om)
    assert om.runtime.result(ZEROS).shape == (N,)
    data = om.storage.read_bytes(f"_tasks/{ZEROS}.result.parquet")
    om.storage.write_bytes(f"_tasks/{ZEROS}.result.parquet", data[:5000] + data[-2000:])
    with pytest.raises(omfs.errors.IntegrityError, match=f"_tasks/{ZEROS}.result.parquet"):
        om.runtime.result(ZEROS)
    out = om_("runtime", "result", ZEROS)
    assert out.code == 1 and len(out.stderr.splitlines()) == 1
    assert f"_tasks/{ZEROS}.result.parquet cannot be read" in out.stderr


def test_the_command_that_ran_a_task_shows_it_as_result_does(om_cli):
    """Newcomer's finding: `om runtime model m predict big` printed all 200,000 rows while
    `om runtime result ID` showed 10 and said how to get all of them."""
    from sklearn.linear_model import LinearRegression

    om, om_ = om_cli
    om.datasets.put(pd.DataFrame({"x": np.arange(5000.0)}), "big")
    om.models.put(LinearRegression().fit(np.c_[[0.0, 1.0]], [0.0, 2.0]), "lin")
    out = om_("runtime", "--local", "model", "lin", "predict", "big")
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "predict" and len(lines) == 11
    assert [float(v) for v in lines[1:]] == pytest.approx([2.0 * i for i in range(10)])
    assert "5,000 rows x 1 columns; `om runtime result " in out.stderr
    task_id = out.stderr.split("om runtime result ")[1].split()[0]
    again = om_("runtime", "result", task_id)
    assert (again.stdout, again.stderr) == (out.stdout, out.stderr)
    cut = json.loads(om_("--json", "runtime", "--local", "model", "lin", "predict", "big").stdout)
    assert cut["truncated"] is True and cut["rows"] == 5000 and len(cut["value"]) == 10

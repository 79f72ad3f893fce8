"""Data piped out of `om` keeps its header row (`om datasets head x > sample.tsv`, `get -`,
a task's predictions); listings stay bare lines, as before."""

from __future__ import annotations

import json
import os

import pandas as pd

import omfs
from omfs.cli.output import Output
from omfs.cli.runtime import _show_value


def test_data_commands_keep_a_header_when_piped(cli, tmp_path):
    env = {"OMFS_ROOT": str(tmp_path / "ctx")}
    frame = pd.DataFrame({"qty": [3, 12], "region": ["EU", "US"]})
    omfs.setup(tmp_path / "ctx").datasets.put(frame, "sales")
    head = cli("datasets", "head", "sales", env=env)
    assert head.stdout.splitlines() == ["qty\tregion", "3\tEU", "12\tUS"]
    none = cli("datasets", "head", "sales", "--where", "qty>100", env=env)
    assert none.stdout.splitlines() == ["qty\tregion"] and "no rows" in none.stderr
    assert cli("datasets", "get", "sales", "-", env=env).stdout.startswith("qty,region\n")
    assert cli("datasets", "list", env=env).stdout.splitlines() == ["sales"]  # a listing
    rows = json.loads(cli("--json", "datasets", "head", "sales", env=env).stdout)
    assert rows[0] == {"qty": 3, "region": "EU"}


def test_a_tasks_values_piped_are_rows_under_a_header(capsys):
    out = Output()
    _show_value(out, "predict", [0, 1, 1])
    assert capsys.readouterr().out.splitlines() == ["predict", "0", "1", "1"]
    _show_value(out, "predict_proba", [[0.25, 0.75], [0.5, 0.5]])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["predict_proba_0\tpredict_proba_1", "0.25\t0.75", "0.5\t0.5"]
    _show_value(out, "score", 0.75)  # not rows: a document, as before
    assert capsys.readouterr().out.strip() == "0.75"
    out.as_json = True
    _show_value(out, "predict", [0, 1])
    assert json.loads(capsys.readouterr().out) == [0, 1]


def test_a_reader_that_stops_early_is_no_error(om_script, tmp_path):
    """`om ... | head -1`: the rows head never reads are no error (no 'Broken pipe', exit 0)."""
    import subprocess

    root = tmp_path / "ctx"
    omfs.setup(root).datasets.put(pd.DataFrame({"a": range(200_000)}), "big")
    pipes = (
        f"'{om_script}' datasets versions big | head -c1 >/dev/null;"
        f" '{om_script}' datasets get big - | head -1"
    )
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipes],
        capture_output=True, text=True, env={**os.environ, "OMFS_ROOT": str(root)}, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a\n" and "Broken pipe" not in out.stderr

"""Pathological table files (issue 17, item 13): a file with absurdly many columns or an
over-long line is refused with one line naming the file, the line and the option that raises
the limit, in bounded memory, and nothing of the refused import stays in the store."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import omfs
from omfs.objects.datasets import write as store_module
from omfs.objects.datasets._files import ImportOptions, TableFileError, open_table_file


@pytest.fixture
def om_ctx(shared_root):
    root, options = shared_root
    return omfs.setup(root, storage_options=options)


def stored_files(ctx, name: str) -> list[str]:
    """Every file of dataset ``name`` as the storage lists it (log and payloads)."""
    base = f"{ctx.bucket}/datasets/{name}"
    return sorted(ctx.storage.list_names(f"{base}/_data") + ctx.storage.list_names(f"{base}/_log"))


def put_file(ctx, path: Path, name: str, **options) -> None:
    ctx.datasets.put(open_table_file(path, ImportOptions(**options)), name)


def wide_header(path: Path, columns: int) -> Path:
    path.write_text(",".join(f"c{i}" for i in range(columns)) + "\n" + "1," * (columns - 1) + "1\n")
    return path


def test_a_wide_file_is_refused_before_its_columns_are_built(om_ctx, tmp_path):
    """10^5 columns took ~1.3 GB and ~10 s (10^6: 13 GB) before; now one line, at once."""
    om_ctx.datasets.put(pd.DataFrame({"a": [1]}), "wide")
    before = stored_files(om_ctx, "wide")
    path = wide_header(tmp_path / "wide.csv", 100_000)
    with pytest.raises(TableFileError) as err:
        put_file(om_ctx, path, "wide")
    message = str(err.value)
    assert message.startswith(f"{path}: 100,000 columns, more than the 10,000 allowed")
    assert "--max-columns 100000" in message and "\n" not in message
    assert stored_files(om_ctx, "wide") == before and len(om_ctx.datasets.versions("wide")) == 1
    small = wide_header(tmp_path / "small.csv", 300)
    with pytest.raises(TableFileError, match="300 columns, more than the 200 allowed"):
        put_file(om_ctx, small, "wide", max_columns=200)
    put_file(om_ctx, small, "wide", max_columns=300)  # raising the limit lets it in
    assert om_ctx.datasets.get("wide").shape == (1, 300)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".jsonl"])
def test_an_over_long_line_names_the_line_and_leaves_nothing(om_ctx, tmp_path, monkeypatch, suffix):
    """A line longer than the block size (here 4 KiB) after parts were already written: the
    refusal names line 202 and --max-line-bytes; the dataset and its files are as before."""
    monkeypatch.setattr(store_module, "_STREAM_PART_BYTES", 1)  # a part per block read
    om_ctx.datasets.put(pd.DataFrame({"a": [0], "b": ["v1"]}), "long")
    before = stored_files(om_ctx, "long")
    if suffix == ".jsonl":
        rows = [f'{{"a": {i}, "b": "{"x" * 40}"}}' for i in range(201)]
        rows += ['{"a": 999, "b": "' + "y" * 20_000 + '"}', '{"a": 1000, "b": "z"}']
        text = "\n".join(rows) + "\n"
        long_line, count = 202, 203
    else:
        text = "a,b\n" + "".join(f"{i},{'x' * 40}\n" for i in range(200))
        text += "999," + "y" * 20_000 + "\n1000,z\n"
        long_line, count = 202, 202
    path = tmp_path / f"long{suffix}"
    data = text.encode()
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(TableFileError) as err:
        put_file(om_ctx, path, "long", max_line_bytes=4096)
    message = str(err.value)
    assert message.startswith(f"{path}, line {long_line}: 20,0"), message
    assert "--max-line-bytes" in message and "\n" not in message
    assert stored_files(om_ctx, "long") == before, "no part of the refused import is left"
    assert len(om_ctx.datasets.versions("long")) == 1
    put_file(om_ctx, path, "long", max_line_bytes=64 * 1024)
    assert len(om_ctx.datasets.get("long")) == count


def test_an_over_long_first_line_is_refused_from_a_bounded_read(tmp_path):
    path = tmp_path / "head.csv"
    path.write_text("a," + "b" * 50_000 + "\n1,2\n")
    with pytest.raises(TableFileError, match=r"head.csv, line 1: 50,002 bytes, longer than"):
        open_table_file(path, ImportOptions(max_line_bytes=4096))
    with pytest.raises(TableFileError, match="--max-line-bytes 0: give a size between"):
        open_table_file(path, ImportOptions(max_line_bytes=0))


def run_om_measured(om_script, args, cwd, root) -> tuple[subprocess.CompletedProcess, int]:
    """``om ARGS`` under a 3 GB address-space cap, with its peak RSS in bytes (measured by a
    wrapper process whose only child is om)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "cap = 3 * 2**30\n"
        "p = subprocess.run(sys.argv[1:], preexec_fn=lambda: resource.setrlimit("
        "resource.RLIMIT_AS, (cap, cap)))\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(p.returncode if p.returncode >= 0 else 100 - p.returncode)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, om_script, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMFS_ROOT": str(root)},
        timeout=300,
    )
    *lines, peak_kb = out.stderr.splitlines()
    out.stderr = "\n".join(lines)
    return out, int(peak_kb) * 1024


def test_cli_a_64mb_line_is_one_error_line_in_bounded_memory(om_script, tmp_path):
    """A 200 MB line aborted the process (SIGABRT, rc -6) in 2 of 3 runs: now rc 1, one line."""
    path = tmp_path / "long.csv"
    with path.open("wb") as f:
        f.write(b"a,b\n1,x\n2," + b"y" * (64 * 2**20) + b"\n3,z\n")
    out, peak = run_om_measured(om_script, ["datasets", "put", "long.csv", "l"], tmp_path, tmp_path)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.splitlines() == [
        "om: error: long.csv, line 3: 67,108,866 bytes, longer than the 8MiB a line may have. "
        "If that is right, raise the limit, e.g. --max-line-bytes 69MB (max_line_bytes= in "
        "Python; memory grows with it)."
    ]
    assert peak < 500 * 2**20, f"peak RSS {peak / 2**20:.0f} MB"
    assert not omfs.setup(str(tmp_path)).datasets.exists("l")


def test_cli_limits_are_options(om_script, tmp_path):
    wide_header(tmp_path / "w.csv", 50)
    (tmp_path / "l.csv").write_text("a\n" + "x" * 3000 + "\n")

    def om(*args):
        return subprocess.run(
            [om_script, "datasets", "put", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "OMFS_ROOT": str(tmp_path / "ctx")},
            timeout=120,
        )

    out = om("w.csv", "w", "--max-columns", "40")
    assert out.returncode == 1 and out.stderr.startswith("om: error: w.csv: 50 columns")
    assert len(out.stderr.splitlines()) == 1 and "--max-columns 50" in out.stderr
    out = om("l.csv", "l", "--max-line-bytes", "1KiB")
    assert out.returncode == 1 and len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("om: error: l.csv, line 2: 3,000 bytes, longer than the 1KiB")
    assert om("w.csv", "w", "--max-columns", "50").returncode == 0
    assert om("l.csv", "l", "--max-line-bytes", "4KB").returncode == 0


def quoted_csv(path: Path, value_lines: int, rows: int = 1) -> Path:
    """A CSV whose ``b`` values are quoted and span ``value_lines`` lines each."""
    value = "y\n" * value_lines
    path.write_text("a,b\n0,x\n" + "".join(f'{i},"{value}"\n' for i in range(1, rows + 1)))
    return path


@pytest.mark.parametrize("skip", [False, True])
def test_a_quoted_value_longer_than_the_limit_is_refused_never_cut(tmp_path, skip):
    """A valid quoted value spanning lines and longer than the block was read as a short row
    plus one bad line per line of it ("expected 2 fields, found 1 ... --skip-bad-lines"),
    and with --skip-bad-lines stored cut short. Now one line naming where it starts."""
    om_ctx = omfs.setup(tmp_path / "ctx")
    path = quoted_csv(tmp_path / "q.csv", 3 * 2**16)  # 384 KiB: 3 blocks of 128 KiB
    with pytest.raises(TableFileError) as err:
        put_file(om_ctx, path, "q", max_line_bytes=2**17, skip_bad_lines=skip)
    message = str(err.value)
    assert message.startswith(f"{path}, line 3: the row starting there holds a quoted value")
    assert "--max-line-bytes" in message and "\n" not in message
    assert not om_ctx.datasets.exists("q")
    put_file(om_ctx, path, "q", max_line_bytes=2**20, skip_bad_lines=skip)
    assert om_ctx.datasets.get("q")["b"].tolist() == ["x", "y\n" * 3 * 2**16]


def test_quoted_values_with_line_breaks_across_blocks_read_whole(tmp_path):
    """Quoted values whose line breaks fall on a block's end are never cut there."""
    om_ctx = omfs.setup(tmp_path / "ctx")
    path = quoted_csv(tmp_path / "many.csv", 3, rows=20_000)  # ~200 KB, blocks of 16 KiB
    put_file(om_ctx, path, "many", max_line_bytes=2**14)
    values = om_ctx.datasets.get("many")["b"].tolist()
    assert len(values) == 20_001 and set(values[1:]) == {"y\ny\ny\n"}

"""Jobs in one process: the store, local runs, failures, notebooks, promotion, sync of runs,
and runs whose process died (on a local folder and on S3)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import omfs
from omfs.errors import InvalidJobError, JobFailedError, NotFoundError
from omfs.objects.jobs.runs import LOST_AFTER, RunRecord

SCRIPT = """\
print("reading sales")
def run(om, scale=1):
    sales = om.datasets.get("sales")
    om.datasets.put(sales.assign(total=sales["amount"] * scale), "totals")
    return {"rows": len(sales), "scale": scale}
"""


@pytest.fixture
def om(shared_root):
    root, options = shared_root
    context = omfs.setup(root, storage_options=options)
    context.datasets.put(pd.DataFrame({"amount": [1.0, 2.0, 3.0]}), "sales")
    return context


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_store_versions_tags_and_refuses_broken_files(om, tmp_path):
    first = om.jobs.put(write(tmp_path, "nightly.py", SCRIPT), "nightly", tag="dev")
    second = om.jobs.put(write(tmp_path, "nightly.py", SCRIPT + "# v2\n"), "nightly")
    assert (first.version, second.version, first.kind) == (1, 2, "script")
    assert om.jobs.get("nightly@dev") == SCRIPT and om.jobs.get("nightly").endswith("# v2\n")
    assert [m.version for m in om.jobs.versions("nightly")] == [1, 2]
    assert om.jobs.metadata("nightly")["filename"] == "nightly.py"
    with pytest.raises(InvalidJobError, match=r"'broken.py' does not compile: line 2"):
        om.jobs.put(write(tmp_path, "broken.py", "x = 1\ny = (\n"), "broken")
    with pytest.raises(InvalidJobError, match="not a valid notebook"):
        om.jobs.put(write(tmp_path, "bad.ipynb", '{"cells": 3}'), "broken")
    with pytest.raises(InvalidJobError, match=r"\.py\) or a Jupyter notebook"):
        om.jobs.put(write(tmp_path, "notes.txt", "hi"), "broken")
    assert om.jobs.list() == ["nightly"] and not om.storage.exists(f"{om.bucket}/jobs/broken/_data")
    assert om.datasets.list() == ["sales"]  # stores stay apart
    from omfs.ops.fsck import fsck

    assert fsck(om) == []


def test_script_job_reads_and_writes_its_own_context(om, tmp_path):
    om.jobs.put(write(tmp_path, "nightly.py", SCRIPT), "nightly")
    rec = om.runtime.mode(local=True).job("nightly").run(scale=10).get()
    assert (rec.status, rec.result, rec.params, rec.version) == (
        "succeeded",
        {"rows": 3, "scale": 10},
        {"scale": 10},
        1,
    )
    assert rec.started <= rec.finished and rec.slot is None
    assert om.datasets.get("totals")["total"].tolist() == [10.0, 20.0, 30.0]
    second = om.runtime.mode(local=True).job("nightly").run().get()
    assert [r.id for r in om.jobs.runs("nightly")] == [second.id, rec.id]
    assert om.jobs.log(rec.id) == {"stdout": "reading sales\n", "stderr": ""}
    assert om.jobs.list() == ["nightly"]  # runs are never shown as jobs


def test_failing_job_raises_naming_job_version_run_and_line(om, tmp_path):
    text = 'print("half way")\nraise ValueError("no sales today")\n'
    om.jobs.put(write(tmp_path, "bad.py", text), "bad")
    with pytest.raises(JobFailedError) as info:
        om.runtime.mode(local=True).job("bad").run().get()
    [rec] = om.jobs.runs("bad")
    message = str(info.value)
    assert "'bad'" in message and "v1" in message and rec.id in message
    assert "ValueError: no sales today" in message
    assert (rec.status, rec.error) == ("failed", "ValueError: no sales today")
    output = om.jobs.log(rec.id, job="bad")
    assert output["stdout"] == "half way\n" and "no sales today" in output["stderr"]


def test_result_that_is_not_json_is_refused_in_one_line(om, tmp_path):
    om.jobs.put(write(tmp_path, "frame.py", "def run(om):\n    return om\n"), "frame")
    with pytest.raises(JobFailedError, match="is not JSON: return text"):
        om.runtime.mode(local=True).job("frame").run().get()


def test_notebook_job_with_parameters_keeps_the_executed_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    om = omfs.setup(tmp_path / "ctx")
    defaults = nbformat.v4.new_code_cell("n = 1")
    defaults.metadata["tags"] = ["parameters"]
    cells = [defaults, nbformat.v4.new_code_cell("print(n * 2)\nom.datasets.put({'n': [n]}, 'nb')")]
    path = tmp_path / "report.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert om.jobs.put(path, "report").kind == "notebook"
    rec = om.runtime.mode(local=True).job("report").run(n=21).get()
    assert rec.status == "succeeded" and om.jobs.log(rec.id)["stdout"] == "42\n"
    assert om.datasets.get("nb")["n"].tolist() == [21]
    executed = json.loads(om.jobs.run_store.notebook(rec))
    assert "injected-parameters" in executed["cells"][1]["metadata"]["tags"]


def test_promote_dev_to_prod_runs_there(om, tmp_path):
    prod = omfs.setup(tmp_path / "prod")
    prod.datasets.put(pd.DataFrame({"amount": [5.0]}), "sales")
    om.jobs.put(write(tmp_path, "nightly.py", SCRIPT), "nightly", tag="ready")
    om.runtime.mode(local=True).job("nightly").run().get()
    meta = om.jobs.promote("nightly@ready", prod.jobs)
    assert meta.version == 1 and prod.jobs.get("nightly") == SCRIPT
    assert prod.jobs.runs("nightly") == []  # a promotion copies the version, not its runs
    rec = prod.runtime.mode(local=True).job("nightly").run(scale=2).get()
    assert rec.result == {"rows": 1, "scale": 2}
    assert prod.datasets.get("totals")["total"].tolist() == [10.0]


def test_sync_carries_a_job_with_its_runs_and_gc_keeps_them(om, tmp_path):
    om.jobs.put(write(tmp_path, "nightly.py", SCRIPT), "nightly")
    first = om.runtime.mode(local=True).job("nightly").run().get()
    target = omfs.setup(tmp_path / "laptop")
    report = omfs.sync(om, target)
    rows = {(r.store, r.name): r.action for r in report.objects}
    assert rows[("jobs", "nightly")] == "copy" and report.runs == 1
    assert [r.id for r in target.jobs.runs("nightly")] == [first.id]
    assert target.jobs.log(first.id)["stdout"] == "reading sales\n"
    # a run that was unfinished in the target is brought up to date; finished ones stay
    store = target.jobs.run_store
    store.write(replace(first, status="running", finished=None).owned_here())
    second = om.runtime.mode(local=True).job("nightly").run().get()
    assert omfs.sync(om, target).runs == 2
    assert {r.id: r.status for r in target.jobs.runs("nightly")} == {
        first.id: "succeeded",
        second.id: "succeeded",
    }
    assert omfs.sync(om, target).runs == 0
    assert target.gc(grace="0s", force=True)["files"] == []
    assert len(target.jobs.runs("nightly")) == 2


def test_a_run_whose_process_died_reads_failed(om, tmp_path):
    om.jobs.put(write(tmp_path, "nightly.py", SCRIPT), "nightly")
    done = om.runtime.mode(local=True).job("nightly").run().get()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    store = om.jobs.run_store
    killed = replace(
        done, id="20240101T000000Z-00000a", status="running", finished=None, worker="tcp://w:1"
    )
    store.write(replace(killed, pid=int(dead.stdout)))
    old = (datetime.now(UTC) - timedelta(seconds=LOST_AFTER + 5)).isoformat()
    store.write(
        replace(killed, id="20240101T000000Z-00000b", host="elsewhere", pid=1, heartbeat=old)
    )
    store.write(
        replace(killed, id="20240101T000000Z-00000c", heartbeat=datetime.now(UTC).isoformat())
    )
    seen = {r.id: r for r in om.jobs.runs("nightly")}
    killed_seen = seen["20240101T000000Z-00000a"]
    assert killed_seen.status == "failed" and "stopped before the run" in killed_seen.error
    assert seen["20240101T000000Z-00000b"].status == "failed" and "no heartbeat from tcp://w:1" in (
        seen["20240101T000000Z-00000b"].error
    )
    assert seen["20240101T000000Z-00000c"].status == "running"
    assert set(RunRecord.__dataclass_fields__) >= {"id", "status", "result", "slot", "worker"}
    with pytest.raises(NotFoundError):
        om.jobs.log("20240101T000000Z-ffffff")


def test_cli_put_run_runs_log(cli, tmp_path):
    root = str(tmp_path / "ctx")
    write(tmp_path, "hello.py", 'print("hi", params)\ndef run(om, n=0):\n    return n + 1\n')
    assert cli("--root", root, "jobs", "put", "hello.py", "hello").code == 0
    ran = cli("--root", root, "--json", "jobs", "run", "hello", "--param", "n=41", "--local")
    assert ran.code == 0, ran.stderr
    [rec] = json.loads(ran.stdout)
    assert (rec["status"], rec["result"]) == ("succeeded", 42)
    assert cli("--root", root, "jobs", "log", rec["id"]).stdout == "hi {'n': 41}\n"
    listed = json.loads(cli("--root", root, "--json", "jobs", "runs", "hello").stdout)
    assert [r["id"] for r in listed] == [rec["id"]]
    write(tmp_path, "bad.py", "raise RuntimeError('nope')\n")
    cli("--root", root, "jobs", "put", "bad.py", "bad")
    failed = cli("--root", root, "jobs", "run", "bad", "--local")
    assert failed.code == 1 and failed.stderr.count("\n") == 1
    assert "RuntimeError: nope" in failed.stderr and "om jobs log" in failed.stderr
    broken = cli("--root", root, "jobs", "put", write(tmp_path, "x.py", "def (:\n").name, "x")
    assert broken.code == 1 and "'x.py' does not compile: line 1" in broken.stderr
    assert cli("--root", root, "jobs", "get", "hello", "out.py").code == 0
    assert (tmp_path / "out.py").read_text().startswith('print("hi"')


def test_notebook_without_the_extra_names_it(tmp_path, monkeypatch):
    om = omfs.setup(tmp_path / "ctx")
    monkeypatch.setitem(sys.modules, "nbformat", None)  # as if it were not installed
    with pytest.raises(omfs.errors.MissingExtraError, match=r"pip install 'omfs\[notebooks\]'"):
        om.jobs.put(write(tmp_path, "report.ipynb", "{}"), "report")
    assert om.jobs.list() == []


def test_cli_runs_are_the_newest_n_with_results_as_json(tmp_path, cli):
    """`om jobs runs NAME -n 2`: the two newest runs; a run's result prints as JSON."""
    om = omfs.setup(tmp_path / "ctx")
    om.jobs.put(write(tmp_path, "r.py", "def run(om, **p):\n    return {'rows': 3}\n"), "r")
    for _ in range(3):
        om.runtime.mode(local=True).job("r").run().get()
    out = cli("--root", om.root, "jobs", "runs", "r", "-n", "2")
    lines = out.stdout.splitlines()
    assert out.code == 0 and len(lines) == 2 and all('{"rows": 3}' in line for line in lines)

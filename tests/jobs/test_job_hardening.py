"""Jobs against a user who tries to break them: run ids that climb out of the context,
exceptions past ``Exception``, reserved and keyword parameters, huge errors and output, a
job that kills or forks its process, and the wording of what ``om`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

import omfs
from omfs.errors import FormatError, InvalidNameError, JobFailedError, ScheduleError, UsageError
from omfs.objects.jobs.runs import RunRecord

SECRET = "TOPSECRET"


def put(om, tmp_path, name: str, text: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    om.jobs.put(path, name)


def run_local(context, name: str, **params):
    return context.runtime.mode(local=True).job(name).run(**params)


def om_cli(om_script, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [om_script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def om(shared_root, tmp_path):
    root, options = shared_root
    context = omfs.setup(root, storage_options=options)
    put(context, tmp_path, "nightly", "print('hi')\n")
    return context


def plant_outside(om) -> str:
    """A run record and output outside the runs folder; the run id that climbs to it."""
    climb = "../../../../outside"
    doc = RunRecord(id=climb, job="nightly", version=1, status="succeeded").to_dict()
    om.storage.write_bytes("outside/run.json", json.dumps(doc).encode())
    om.storage.write_bytes("outside/stdout.txt", SECRET.encode())
    return climb


def test_run_ids_are_checked_and_never_read_from_a_record(om):
    climb = plant_outside(om)
    with pytest.raises(InvalidNameError, match="Invalid run id"):
        om.jobs.log(climb, job="nightly")
    with pytest.raises(InvalidNameError, match="Invalid run id"):
        om.jobs.run(climb)
    with pytest.raises(InvalidNameError):
        om.jobs.log("20240101T000000Z-00000a", job="../../outside")
    # a record whose id was changed to climb out: refused, its output never read
    rec = run_local(om, "nightly").get()
    key = f"{om.jobs.run_store.folder('nightly', rec.id)}/run.json"
    om.storage.write_bytes(key, json.dumps({**rec.to_dict(), "id": climb}).encode())
    with pytest.raises(FormatError, match="changed outside omfs"):
        om.jobs.log(rec.id, job="nightly")
    assert om.jobs.runs("nightly") == []  # a tampered record is not listed (fsck tells it)


def test_run_ids_are_checked_on_the_command_line(tmp_path, cli):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "nightly", "print('hi')\n")
    climb = plant_outside(om)
    out = cli("--root", om.root, "jobs", "log", climb, "--job", "nightly")
    assert out.code == 1 and "Invalid run id" in out.stderr and SECRET not in out.stdout
    assert out.stderr.count("\n") == 1


BASE = """\
print("before")
raise {what}
"""


def test_a_job_raising_a_base_exception_is_recorded_with_its_output(tmp_path, cli):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "gen", BASE.format(what="GeneratorExit('closed')"))
    with pytest.raises(JobFailedError, match="GeneratorExit: closed"):
        run_local(om, "gen").get()
    (rec,) = om.jobs.runs("gen")
    assert (rec.status, rec.error) == ("failed", "GeneratorExit: closed")
    assert om.jobs.log(rec.id)["stdout"] == "before\n"
    # Ctrl-C in a job run with --local: recorded, then om stops as interrupted (130)
    put(om, tmp_path, "ctrl", BASE.format(what="KeyboardInterrupt"))
    out = cli("--root", om.root, "jobs", "run", "ctrl", "--local")
    assert out.code == 130 and "Traceback" not in out.stderr
    (rec,) = om.jobs.runs("ctrl")
    assert (rec.status, rec.error) == ("failed", "KeyboardInterrupt")
    log = om.jobs.log(rec.id)
    assert log["stdout"] == "before\n" and "KeyboardInterrupt" in log["stderr"]


def test_reserved_parameter_names_are_refused_up_front(tmp_path, cli):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "p", "def run(om, **params):\n    return sorted(params)\n")
    with pytest.raises(UsageError, match="parameter named 'om'"):
        run_local(om, "p", om=1)
    with pytest.raises(ScheduleError, match="named 'params'"):
        om.jobs.schedule("p", every="1h", params={"params": 1})
    out = cli("--root", om.root, "jobs", "run", "p", "--local", "--param", "om=x")
    assert out.code == 1 and out.stderr.count("\n") == 1 and "parameter named 'om'" in out.stderr
    assert om.jobs.runs("p") == []  # nothing was started
    assert run_local(om, "p", **{"class": 1}).get().result == ["class"]


def test_a_notebook_with_a_keyword_parameter_logs_plain_text(tmp_path, capfd):
    """``class`` cannot be a variable: the parameter is in ``params`` only; the log has no
    terminal colours; the kernel's TCP warning goes to the log, not the terminal."""
    om = omfs.setup(tmp_path / "ctx")
    nb = nbformat.v4.new_notebook()
    tagged = nbformat.v4.new_code_cell("x = 0")
    tagged.metadata["tags"] = ["parameters"]
    body = "print('class', params['class'], x)\nraise ValueError('bad \\x1b[31mred')"
    nb.cells = [tagged, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    om.jobs.put(tmp_path / "nb.ipynb", "nb")
    with pytest.raises(JobFailedError, match="ValueError: bad red"):
        run_local(om, "nb", **{"class": 1, "x": 2}).get()
    (rec,) = om.jobs.runs("nb")
    log = om.jobs.log(rec.id)
    assert log["stdout"] == "class 1 2\n"
    assert "ValueError" in log["stderr"] and "\x1b" not in log["stderr"]
    assert "without encryption" not in capfd.readouterr().err


def test_a_huge_error_line_is_cut_and_kept_whole_in_stderr(tmp_path):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "huge", "raise ValueError('x' * 200_000)\n")
    with pytest.raises(JobFailedError) as caught:
        run_local(om, "huge").get()
    assert len(str(caught.value)) < 800 and "cut at 500 characters" in str(caught.value)
    (rec,) = om.jobs.runs("huge")
    assert len(rec.error) < 600
    assert "x" * 200_000 in om.jobs.log(rec.id)["stderr"]


STREAM = """\
import sys, time
print("early", flush=True)
print("y" * 5000)
def run(om, **params):
    me = om.jobs.runs("stream")[0].id
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the output is kept while the job still runs
        if om.jobs.log(me)["stdout"].startswith("early"):
            return True
        time.sleep(0.1)
    return False
"""


def test_output_is_kept_as_it_comes_and_capped(om, tmp_path, monkeypatch):
    monkeypatch.setenv("OMFS_JOB_OUTPUT_LIMIT", "2KB")
    put(om, tmp_path, "stream", STREAM)
    rec = run_local(om, "stream").get()
    assert rec.result is True
    out = om.jobs.log(rec.id)["stdout"]
    assert out.startswith("early\nyyy") and out.endswith("the rest was dropped]\n")
    assert len(out.encode()) < 2100


def test_a_job_that_kills_its_process_keeps_its_output_and_reads_lost(tmp_path, om_script):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "boom", "import os\nprint('so far', flush=True)\nos._exit(3)\n")
    out = om_cli(om_script, "--root", om.root, "jobs", "run", "boom", "--local")
    assert out.returncode == 3
    (rec,) = om.jobs.runs("boom")
    assert rec.status == "failed" and "stopped before the run finished" in rec.error
    assert om.jobs.log(rec.id)["stdout"] == "so far\n"


FORK = """\
import os
def run(om, **params):
    pid = os.fork()
    if pid == 0:
        raise ValueError("the child")  # returns into omfs, in a copy of the om process
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_never_finishes_the_record(tmp_path, om_script):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "forky", FORK)
    out = om_cli(om_script, "--root", om.root, "--json", "jobs", "run", "forky", "--local")
    assert out.returncode == 0, out.stderr
    assert "the child" not in out.stderr
    [printed] = json.loads(out.stdout)  # one record printed, by the om that started it
    assert (printed["status"], printed["result"]) == ("succeeded", 1)
    assert om.jobs.runs("forky")[0].status == "succeeded"


def test_what_om_prints_says_each_thing_once(tmp_path, cli):
    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "bad", "raise RuntimeError('nope')\n")
    out = cli("--root", om.root, "jobs", "run", "bad", "--local")
    assert out.code == 1 and "`om jobs log " in out.stderr and "om.jobs.log(" not in out.stderr
    with pytest.raises(JobFailedError, match=r"Its output: om\.jobs\.log\("):
        run_local(om, "bad").get()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    rec = RunRecord(id="20240101T000000Z-00000a", job="bad", version=1, pid=pid)
    rec.host, rec.worker = RunRecord(id="x", job="x", version=1).owned_here().host, None
    rec.worker = f"scheduler on {rec.host} (pid {pid})"
    om.jobs.run_store.write(rec)
    error = om.jobs.run(rec.id).error
    assert error.count(f"pid {pid}") == 1, error
    helptext = cli("scheduler", "run", "--help").stdout
    assert "SIGTERM" in helptext


def test_a_job_raising_keyboard_interrupt_in_a_thread_just_fails(tmp_path):
    """On a worker's or a scheduler's thread a job's KeyboardInterrupt is no Ctrl-C: the run
    fails and the thread goes on."""
    import threading

    om = omfs.setup(tmp_path / "ctx")
    put(om, tmp_path, "ctrl", BASE.format(what="KeyboardInterrupt"))
    errors = []

    def run():
        try:
            run_local(om, "ctrl").get()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert [type(e) for e in errors] == [JobFailedError]

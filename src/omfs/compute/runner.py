"""Running one job run where it executes (a Dask worker, a scheduler, or ``--local`` this
process): :func:`execute_run`.

It takes the run record, keeps it alive with a heartbeat, runs the script or notebook, and
rewrites the record with how it ended. Whatever the job does (raise any exception, even
``KeyboardInterrupt``; exit; print without end) the record ends ``succeeded`` or
``failed`` with its error line, and the output up to then is kept: it is written to the
run's files as it comes on a local context, and uploaded every second elsewhere.

There is no sandbox: a job runs with the rights of the process that runs it, in that
process. A job that forks leaves a child that would return here: only the process that
started the run finishes its record, and the child then ends (``os._exit``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import keyword
import os
import pickle
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from omfs.compute.capture import RunOutput, captured
from omfs.objects.jobs.runs import HEARTBEAT, RunRecord, RunStore, now
from omfs.objects.jobs.store import notebook_module

__all__ = ["ERROR_LINE_LIMIT", "FLUSH_EVERY", "error_line", "execute_run"]

#: an error line longer than this is cut (the whole error is in the run's stderr)
ERROR_LINE_LIMIT = 500
#: seconds between uploads of a running job's new output (a non-local context)
FLUSH_EVERY = 1.0
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

Outcome = tuple[str, Any, "str | None", dict[str, bytes]]


class _Heartbeat:
    """Uploads new output every FLUSH_EVERY seconds (``flush``) and rewrites the running
    record every HEARTBEAT seconds, until stopped."""

    def __init__(self, store: RunStore, rec: RunRecord, flush: Callable[[], None] | None):
        self.store, self.rec, self.flush = store, rec, flush
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"omfs-{rec.id}")

    def _beat(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(min(FLUSH_EVERY, HEARTBEAT)):
            with contextlib.suppress(Exception):  # a missed beat is not the run's failure
                if self.flush is not None:
                    self.flush()
                if time.monotonic() - last >= HEARTBEAT:
                    last = time.monotonic()
                    self.store.write(replace(self.rec, heartbeat=now()))

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():  # not in a forked child, where it never ran
            self.thread.join()


def _worker_address(claimed: str | None) -> str:
    """The Dask worker running this, else who claimed the run to run it (a scheduler), else
    ``local``. Dask is not imported for it: a process that never imported it is no worker."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        with contextlib.suppress(ValueError):
            return str(distributed.get_worker().address)
    return claimed or "local"


def _open_output(store: RunStore, rec: RunRecord) -> RunOutput:
    """The run's output files: its own folder on a local context, else a temporary one."""
    storage = store.storage
    if storage.is_local:
        return RunOutput(storage.local(storage.path(store.folder(rec.job, rec.id))))
    return RunOutput(None)


def _upload(store: RunStore, rec: RunRecord, output: RunOutput) -> None:
    if output.temporary:
        for filename, data in output.changed().items():
            store.write_output(rec, filename, data)


def execute_run(omega: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Run one job run (on a worker, or in this process) and return its final record. A
    ``KeyboardInterrupt`` is recorded (``failed``), then raised again in the main thread
    (Ctrl-C of a run in this process); in another thread (a worker's, a scheduler's) the
    failed record is returned as for any other exception."""
    store: RunStore = omega.jobs.run_store
    rec = store.read(doc["job"], doc["id"], seen=False)
    if rec.status != "running":
        return rec.to_dict()  # cancelled before it started
    rec = replace(rec.owned_here(), worker=_worker_address(rec.worker))
    store.write(rec)
    owner = os.getpid()
    output = _open_output(store, rec)
    interrupt: BaseException | None = None
    try:
        with _Heartbeat(store, rec, lambda: _upload(store, rec, output)):
            outcome = _execute(omega, rec, output)
    except BaseException as exc:  # GeneratorExit, KeyboardInterrupt, the storage gone...
        output.err.write(traceback.format_exc())
        outcome = ("failed", None, error_line(exc), {})
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
    if os.getpid() != owner:  # a child the job forked came back: the record is not its own
        os._exit(0 if outcome[0] == "succeeded" else 1)
    rec = _finish(store, rec, outcome, output)
    if interrupt is not None and threading.current_thread() is threading.main_thread():
        raise interrupt  # Ctrl-C of a run in this process: it stops the caller too
    return rec.to_dict()


def _finish(store: RunStore, rec: RunRecord, outcome: Outcome, output: RunOutput) -> RunRecord:
    """Keep the output and write the final record."""
    status, result, error, files = outcome
    try:
        for filename, data in files.items():
            store.write_output(rec, filename, data)
        _upload(store, rec, output)
    finally:
        output.close()
    rec = replace(rec, status=status, result=result, error=_short(error), finished=now())
    store.write(rec)
    return rec


def _short(line: str | None) -> str | None:
    if line is None or len(line) <= ERROR_LINE_LIMIT:
        return line
    cut = f"... (cut at {ERROR_LINE_LIMIT} characters; the run's stderr has the whole error)"
    return line[:ERROR_LINE_LIMIT] + cut


def _execute(omega: Any, rec: RunRecord, output: RunOutput) -> Outcome:
    meta = omega.jobs.metadata(rec.job, version=rec.version)
    text = omega.jobs.read_payload(meta).decode("utf-8")
    filename = meta.info.get("filename") or f"{rec.job}.py"
    if meta.kind == "notebook":
        return _run_notebook(omega, rec, text, output)
    return _run_script(omega, rec, text, filename, output)


def error_line(exc: BaseException) -> str:
    """The last line of an exception, as a traceback ends with it."""
    return traceback.format_exception_only(exc)[-1].strip() or type(exc).__name__


def _run_script(omega: Any, rec: RunRecord, text: str, filename: str, output: RunOutput) -> Outcome:
    scope = {"__name__": "__main__", "__file__": filename, "om": omega, "params": rec.params}
    status, result, error = "succeeded", None, None
    try:
        with captured(output.out, output.err):
            exec(compile(text, filename, "exec"), scope)
            if callable(scope.get("run")):
                result = scope["run"](omega, **rec.params)
        result, error = _json_result(result)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "failed", f"SystemExit: {exc.code}"
    except Exception as exc:
        status, error = "failed", error_line(exc)
        output.err.write(traceback.format_exc())
    if error is not None:
        status = "failed"
    return status, result, error, {}


def _json_result(result: Any) -> tuple[Any, str | None]:
    """``result`` as JSON, or None and the line saying why it is refused."""
    try:
        return json.loads(json.dumps(result, allow_nan=False)), None
    except (TypeError, ValueError):
        return None, (
            f"the result of run() is a {type(result).__name__}, which is not JSON: return "
            "text, numbers, lists or dicts (store data with om.datasets.put)"
        )


def _parameter_cell(omega: Any, params: dict[str, Any]) -> str:
    """The code injected after the ``parameters`` cell: ``om`` (the context, as a worker
    receives it) and the parameters, each also as a variable where its name can be one."""
    context = base64.b64encode(pickle.dumps(omega)).decode()
    lines = [
        "# Injected by omfs: the job's context and the run's parameters",
        "import base64 as _b64, json as _json, pickle as _pickle",
        f"om = _pickle.loads(_b64.b64decode({context!r}))",
        f"params = _json.loads({json.dumps(params)!r})",
    ]
    named = [k for k in params if k.isidentifier() and not keyword.iskeyword(k)]
    lines += [f"{key} = params[{key!r}]" for key in named]
    return "\n".join(lines)


def _run_notebook(omega: Any, rec: RunRecord, text: str, output: RunOutput) -> Outcome:
    nbformat = notebook_module("nbformat", f"The notebook job {rec.job!r}")
    nbclient = notebook_module("nbclient", f"The notebook job {rec.job!r}")
    notebook = nbformat.reads(text, as_version=4)
    cell = nbformat.v4.new_code_cell(_parameter_cell(omega, rec.params))
    cell.metadata["tags"] = ["injected-parameters"]
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    notebook.cells.insert(tagged[0] + 1 if tagged else 0, cell)
    client = nbclient.NotebookClient(notebook, timeout=None, kernel_name="python3")
    status, error = "succeeded", None
    # the kernel's own stdout and stderr (its warnings) go to the run's log, not a terminal
    with tempfile.TemporaryFile() as kout, tempfile.TemporaryFile() as kerr:
        try:
            with captured(output.out, output.err):
                client.execute(stdout=kout, stderr=kerr)
        except nbclient.exceptions.CellExecutionError as exc:
            status, error = "failed", _plain(f"{exc.ename}: {exc.evalue}")
        except Exception as exc:  # the kernel would not start, or died
            status, error = "failed", _plain(error_line(exc))
        _notebook_streams(notebook, output.out, output.err)
        for kernel, sink in ((kout, output.out), (kerr, output.err)):
            kernel.seek(0)
            sink.write(kernel.read().decode("utf-8", "replace"))
    return status, None, error, {"output.ipynb": nbformat.writes(notebook).encode()}


def _notebook_streams(notebook: Any, out: io.TextIOBase, err: io.TextIOBase) -> None:
    """The executed notebook's stream and error outputs, as plain text (no ANSI colours)."""
    for c in notebook.cells:
        for item in c.get("outputs", []):
            if item.get("output_type") == "stream":
                (err if item.get("name") == "stderr" else out).write(_plain(item.get("text", "")))
            elif item.get("output_type") == "error":
                err.write(_plain("\n".join(item.get("traceback", []))) + "\n")


def _plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)

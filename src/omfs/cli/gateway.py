"""The runtime gateway of the background cluster: ``om runtime`` without importing Dask.

Part of the CLI: its answers are what ``om runtime model`` prints.

Importing Dask's ``distributed`` takes most of a second, more than a task on a warm cluster.
So ``om cluster start`` runs one more process beside the scheduler and workers: the gateway,
which keeps a Dask client and answers on a Unix socket in the user's omfs state folder
(mode 0600: the user's own). ``om runtime model ...`` sends it one JSON line (the context's
root, storage options and bucket, and the task) and prints the one JSON line it answers.
Without a gateway (a cluster of one's own, ``--local``) the CLI runs the same
:func:`model_command` in its own process.

A client that goes away (Ctrl-C) has its task cancelled, as in the CLI's own process.
``om runtime result`` and ``om runtime ping`` are answered here too. Every second the
gateway records as ``failed`` the tasks it submitted (``--async`` ones included) that Dask
gave up on because their workers died.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omfs.cli.errors import USER_ERRORS, error_line, exit_code
from omfs.cli.output import jsonable
from omfs.compute.records import encode_value
from omfs.compute.resources import ResourceSpec
from omfs.errors import OmfsError, TaskCancelledError, UnstorableResultError

__all__ = [
    "error_answer",
    "job_command",
    "model_command",
    "ping_command",
    "request",
    "result_command",
    "serve",
    "with_requirements",
]

_MAX_REQUEST = 16 * 2**20


def with_requirements(runtime: Any, require: list[str]) -> Any:
    """``runtime`` routed by ``--require`` items: ``LABEL`` or ``NAME=AMOUNT``."""
    if not require:
        return runtime
    return runtime.require(None, **ResourceSpec.from_options(require).amounts)


def model_command(
    om: Any,
    spec: dict[str, Any],
    *,
    debug: bool = False,
    gone: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run ``om runtime model`` as ``spec`` says; the answer the CLI prints.

    ``spec``: ``name``, ``action``, ``x``, ``y``, ``result``, ``params``, ``timeout``,
    ``require``, ``local``, ``async``. The answer is ``{"id": ...}`` (``async``: at once,
    the task runs on), ``{"meta": ...}`` (a stored result),
    ``{"value": ...}``, or ``{"error": message, "code": 1}``, with ``notice`` lines for
    stderr. A timeout cancels the task (nothing is written); so does ``gone()`` turning
    True (the client went away). ``debug`` re-raises errors with their traceback.
    """
    try:
        task = _submit(om, spec)
    except USER_ERRORS as exc:
        if debug:
            raise
        return error_answer(exc)
    if spec.get("async"):
        om.cluster.detach()  # its record written, it runs on without this client
        return {"id": task.id, "description": task.description}
    notices: list[str] = []
    try:
        outcome = _outcome(task, spec.get("timeout"), gone, notices)
    except _Answered as answered:
        return answered.answer
    except KeyboardInterrupt:
        task.cancel()
        raise
    except Exception as exc:
        if debug:
            raise
        return {**_failure(task, exc), "notice": notices}
    try:
        answer = _answer(outcome, stored=True)
    except UnstorableResultError as exc:  # as `om runtime result ID` refuses it
        return {**error_answer(exc), "notice": notices}
    if "value" in answer:  # a long value shown as `om runtime result ID` shows it
        answer |= _preview(outcome, answer["value"]) | {"task_id": task.id}
    return {**answer, "notice": notices}


def _preview(outcome: Any, value: Any) -> dict[str, Any]:
    """What :func:`result_command` cuts of a long value, cut here from the value in hand:
    a frame or array of over :data:`SHOWN_WHOLE` rows to its first rows."""
    shape = getattr(outcome, "shape", None)
    if not isinstance(shape, tuple) or not shape:
        return _cut(value, {"rows": None})
    if shape[0] <= SHOWN_WHOLE:
        return {}
    head = outcome.iloc[:PREVIEW_ROWS] if hasattr(outcome, "iloc") else outcome[:PREVIEW_ROWS]
    columns = shape[1] if len(shape) > 1 else 1
    return {"value": _answer(head)["value"], "truncated": {"rows": shape[0], "columns": columns}}


def _answer(outcome: Any, *, stored: bool = False) -> dict[str, Any]:
    """A task's value as the CLI prints it: a stored version's metadata, else the value as
    JSON (an array as a list, a frame as its to_dict()). ``stored``: a value straight from
    the task, which must be one its record can store (UnstorableResultError otherwise)."""
    if hasattr(outcome, "to_dict") and hasattr(outcome, "version"):
        return {"meta": outcome.to_dict()}
    if stored:
        encode_value(outcome)  # the one judge of what is stored (and so shown)
    if hasattr(outcome, "tolist"):
        outcome = outcome.tolist()
    return {"value": jsonable(outcome)}


#: a frame or array of more rows than this is shown by its first :data:`PREVIEW_ROWS`
SHOWN_WHOLE = 1000
PREVIEW_ROWS = 10
#: a plain value longer than this as JSON text is shown by its first items
MAX_TEXT = 2**20


def result_command(om: Any, spec: dict[str, Any], *, debug: bool = False) -> dict[str, Any]:
    """``om runtime result``: the answer for task ``spec["id"]`` (waiting up to
    ``spec["timeout"]``), as :func:`model_command` answers; a long value cut to a preview,
    what was cut in ``truncated`` (``rows`` and ``columns``, or ``items``)."""
    from omfs.compute.records import read_head, wait_ended

    task_id = spec["id"]
    try:
        om.runtime.status(task_id)  # this process's own pending tasks recorded first
        wait_ended(om.storage, task_id, spec.get("timeout"))
        head = read_head(om.storage, task_id, PREVIEW_ROWS, SHOWN_WHOLE)
        answer = _answer(head["value"])
        if "value" in answer:  # shown under the task's action, as the command that ran it
            answer["action"] = om.runtime.task(task_id).get("action")
            answer |= _cut(answer["value"], head)
        return answer
    except USER_ERRORS as exc:
        if debug:
            raise
        return error_answer(exc)


def _cut(value: Any, head: dict[str, Any]) -> dict[str, Any]:
    """What to add to the answer of a long value: ``truncated``, and for a plain value
    over :data:`MAX_TEXT` its first :data:`PREVIEW_ROWS` items (or characters)."""
    if head["rows"] is not None:  # a frame or array: its head was all that was read
        if head["rows"] <= SHOWN_WHOLE:
            return {}
        return {"truncated": {"rows": head["rows"], "columns": head["columns"]}}
    length = 0
    for chunk in json.JSONEncoder(default=str).iterencode(value):
        length += len(chunk)
        if length > MAX_TEXT:
            break
    else:
        return {}
    if isinstance(value, str):
        return {"value": value[: PREVIEW_ROWS * 100], "truncated": {"characters": len(value)}}
    if isinstance(value, dict):
        first: Any = {k: value[k] for k in list(value)[:PREVIEW_ROWS]}
    elif isinstance(value, list):
        first = value[:PREVIEW_ROWS]
    else:
        return {}  # no number is that long
    return {"value": first, "truncated": {"items": len(value)}}


def ping_command(om: Any, spec: dict[str, Any], *, debug: bool = False) -> dict[str, Any]:
    """``om runtime ping``: ``{"rows": [...]}``, one per worker on the route ``spec["require"]``
    that answered within ``spec["timeout"]`` (default 10 s), or the error answer."""
    try:
        runtime = with_requirements(om.runtime, list(spec.get("require") or []))
        return {"rows": runtime.ping(timeout=float(spec.get("timeout") or 10))}
    except USER_ERRORS as exc:
        if debug:
            raise
        return error_answer(exc)


def job_command(
    om: Any, spec: dict[str, Any], *, debug: bool = False, gone: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Run ``om jobs run`` as ``spec`` says (``name``, ``params``, ``require``, ``local``,
    ``async``); the answer is ``{"run": record}`` (with ``async``: as it started) or
    ``{"error": message, "code": n}``. The client going away before a worker took the run
    cancels it; one that started runs on (its record says how it ended)."""
    try:
        runtime = with_requirements(om.runtime, list(spec.get("require") or []))
        started = (
            runtime.mode(local=bool(spec.get("local")))
            .job(spec["name"])
            .run(**dict(spec.get("params") or {}))
        )
        if spec.get("async"):
            return {"run": started.record().to_dict()}
        while True:
            try:
                return {"run": started.get(timeout=0.2).to_dict()}
            except TimeoutError:
                if gone is not None and gone():
                    started.cancel()
                    return {"error": "interrupted", "code": 130}
    except USER_ERRORS as exc:
        if debug:
            raise
        return error_answer(exc)


def _submit(om: Any, spec: dict[str, Any]) -> Any:
    """Start the task ``spec`` describes on the context's runtime; its TaskResult."""
    runtime = with_requirements(om.runtime, list(spec.get("require") or []))
    runtime = runtime.mode(local=bool(spec.get("local")))
    proxy = runtime.model(spec["name"])
    if spec["action"] == "gridsearch":
        params = dict(spec.get("params") or {})
        return proxy.gridsearch(
            spec.get("x"), spec.get("y"), parameters=_grid(spec.get("param_grid")),
            cv=params.pop("cv", 3), scoring=params.pop("scoring", None),
        )  # fmt: skip
    return proxy.task(
        spec["action"], spec.get("x"), spec.get("y"), rName=spec.get("result"),
        **dict(spec.get("params") or {}),
    )  # fmt: skip


def error_answer(exc: BaseException) -> dict[str, Any]:
    """The answer for a user error: its line and exit status, its type's name (``kind``)
    and, where it has one, its ``summary`` without advice (which the CLI may replace)."""
    answer = {"error": error_line(exc), "code": exit_code(exc), "kind": type(exc).__name__}
    summary = getattr(exc, "summary", "")
    if summary:
        answer["summary"] = summary
    return answer


def _grid(text: Any) -> Any:
    """``--param-grid`` JSON: ``{"C": [0.1, 1, 10]}``."""
    from omfs.errors import UsageError

    if not text:
        raise UsageError("gridsearch needs --param-grid, e.g. '{\"C\": [0.1, 1, 10]}'")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--param-grid is not JSON ({exc}): e.g. '{{\"C\": [0.1, 1]}}'") from None


class _Answered(Exception):
    """The task ended without an outcome: ``answer`` is what the CLI prints."""

    def __init__(self, answer: dict[str, Any]):
        super().__init__(answer.get("error"))
        self.answer = answer


def _outcome(
    task: Any, timeout: float | None, gone: Callable[[], bool] | None, notices: list[str]
) -> Any:
    """The task's outcome; a timeout cancels it (unless it was already writing: then it is
    waited for, with a notice), as does the client going away."""
    try:
        return _wait(task, timeout, gone)
    except TimeoutError:
        if task.cancel():
            raise _Answered(
                {
                    "error": f"{task.description} did not finish within {timeout:g} s; it was "
                    "cancelled and wrote nothing. Give a longer --timeout, or none to wait.",
                    "code": 1,
                }
            ) from None
        notices.append(
            f"om: {task.description} was already writing its result at the timeout; waiting for it"
        )
        return task.get()
    except _Gone:
        task.cancel()
        raise _Answered({"error": "interrupted", "code": 130}) from None
    except TaskCancelledError as exc:
        raise _Answered(error_answer(exc)) from None


def _failure(task: Any, exc: Exception) -> dict[str, Any]:
    """The answer for a task that failed: a user error in one line; anything else (the
    model's own exception) named with its type."""
    if isinstance(exc, OmfsError):
        return error_answer(exc)
    return {
        "error": f"{task.description} failed: {type(exc).__name__}: {error_line(exc)} "
        "(OMFS_DEBUG=1 shows the worker's traceback)",
        "code": 1,
    }


class _Gone(Exception):
    """The client of a gateway request went away."""


def _wait(task: Any, timeout: float | None, gone: Callable[[], bool] | None) -> Any:
    if gone is None:
        return task.get(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
        try:
            return task.get(timeout=step)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            if gone():
                raise _Gone() from None


# -- the client side (the CLI) -------------------------------------------------------------
def request(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the gateway at ``path`` and return its answer (Ctrl-C closes
    the connection, which cancels the task)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        # one line, and the connection stays open both ways: the gateway takes a closed
        # connection for a client that went away
        conn.sendall(json.dumps(payload).encode() + b"\n")
        chunks = []
        while chunk := conn.recv(1 << 16):
            chunks.append(chunk)
    answer = json.loads(b"".join(chunks) or b"null")
    if not isinstance(answer, dict):
        raise OSError(f"the runtime gateway at {path} gave no answer; see `om cluster status`")
    return answer


# -- the server side -------------------------------------------------------------------------
class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(_MAX_REQUEST)
        try:
            answer = self.server.answer(json.loads(line), self._gone)
        except Exception as exc:  # a bad request
            answer = {"error": f"bad request to the runtime gateway: {error_line(exc)}", "code": 1}
        self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")

    def _gone(self) -> bool:
        """Whether the client closed the connection (it sends one line, then only reads)."""
        conn: socket.socket = self.connection
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, address: str, security: Any = None):
        from distributed import Client

        from omfs.compute.cluster import ClusterHandle

        self.client = Client(address, timeout="30s", security=security)
        self.handle_ = ClusterHandle(self.client, background=True)
        old = os.umask(0o077)  # the socket is the user's only
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old)

    def answer(self, payload: dict[str, Any], gone: Callable[[], bool]) -> dict[str, Any]:
        from omfs.context import Omega
        from omfs.storage import Storage

        context = payload["context"]
        storage = Storage(
            context["root"],
            context.get("storage_options") or {},
            unsafe_commits=bool(context.get("unsafe_commits")),
            durable=bool(context.get("durable", True)),
        )
        om = Omega(storage, context["bucket"], _cluster_handle=self.handle_)
        debug = bool(payload.get("debug"))
        try:
            if "job" in payload:
                return job_command(om, payload["job"], debug=debug, gone=gone)
            if "result" in payload:
                return result_command(om, payload["result"], debug=debug)
            if "ping" in payload:
                return ping_command(om, payload["ping"], debug=debug)
            return model_command(om, payload["task"], debug=debug, gone=gone)
        except Exception as exc:
            return {
                "error": f"{type(exc).__name__}: {error_line(exc)}",
                "code": 1,
                "traceback": traceback.format_exc(),
            }


def serve(address: str, path: Path, scheduler_pid: int | None = None, security: Any = None) -> None:
    """Answer requests on ``path`` until the scheduler at ``address`` goes away;
    ``security``: the cluster's (a ``distributed.Security``)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # what every request needs, imported before the socket appears, not on the first one

    server = _Server(path, address, security)

    def watch() -> None:
        while True:
            time.sleep(1)
            # tasks whose workers died (--async ones too): their records say so at once
            with contextlib.suppress(Exception):
                server.handle_.record_failures()
            alive = server.client.status == "running"
            if scheduler_pid is not None:
                try:
                    os.kill(scheduler_pid, 0)
                except ProcessLookupError:
                    alive = False
            if not alive:
                server.shutdown()
                return

    threading.Thread(target=watch, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `om cluster stop`: clean up
    try:
        server.serve_forever()
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server.handle_.record_abandoned(
            "the background cluster stopped (`om cluster stop`, or its scheduler died) before "
            "this task ended; submit it again once a cluster runs"
        )
        server.client.close()


if __name__ == "__main__":  # python -m omfs.cli.gateway ADDRESS SOCKET [PID [CERT KEY]]
    from omfs.compute._tls import ClusterTLS

    pid = int(sys.argv[3]) if len(sys.argv) > 3 else None
    tls = ClusterTLS(Path(sys.argv[4]), Path(sys.argv[5])) if len(sys.argv) > 5 else None
    serve(sys.argv[1], Path(sys.argv[2]), pid, tls.security() if tls else None)

"""What runs on a worker (or in-process in local mode): one model task.

Workers open the context from its root URL and non-secret storage options (the pickled
Omega carries nothing else); credentials come from the worker's own environment. Loaded
models are kept in a small per-process cache keyed by location, version and sha256.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import logging
import math
import os
import re
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from omfs.compute.claims import claim_write
from omfs.compute.records import (
    TASK_HEARTBEAT,
    encode_value,
    error_text,
    finished_doc,
    record_key,
    write_record,
)
from omfs.errors import (
    InvalidModelError,
    TaskCancelledError,
    TaskFailedError,
    UnstorableResultError,
    UsageError,
)
from omfs.objects.metadata import Metadata, utcnow

__all__ = [
    "FITTING",
    "METHODS",
    "as_target",
    "cache_stats",
    "clear_cache",
    "load_model",
    "parse_input",
    "plain_param",
    "record_run",
    "resolve_input",
    "run_model_task",
    "run_recorded",
]

METHODS = (
    "fit",
    "partial_fit",
    "predict",
    "predict_proba",
    "decision_function",
    "transform",
    "score",
)
#: the methods that change the model: their task stores the fitted model as a new version
FITTING = ("fit", "partial_fit")
_INPUT = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<columns>[^\[\]]*)\])?$")
_CACHE_SIZE = 8
#: a Parquet result up to this size travels inside ``finished.json`` (base64)
INLINE_PARQUET = 64 * 1024


def cache_stats() -> dict[str, int]:
    """How often this process reused a loaded model and how often it read one from storage."""
    info = _cached_model.cache_info()
    return {"hits": info.hits, "loads": info.misses, "size": info.currsize}


def clear_cache() -> None:
    """Forget the models this process loaded (and the counts of :func:`cache_stats`)."""
    _cached_model.cache_clear()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_model(omega: Any, name: str, version: int, sha256: str) -> Any:
    """One stored model version, loaded once per process while it stays among the last
    used (``omega`` compares by root and bucket, ``sha256`` pins the payload)."""
    return omega.models.get(name, version=version)


def load_model(omega: Any, meta: Metadata) -> Any:
    return _cached_model(omega, meta.name, meta.version, meta.info["sha256"])


def parse_input(value: str) -> tuple[str, list[str] | None]:
    """A dataset input ``"sales"`` / ``"sales@v2[a,b]"`` as its name and its columns."""
    match = _INPUT.match(value.strip())
    if not match:
        raise UsageError(
            f"Input {value!r} is neither data nor a dataset name such as 'sales' or 'sales[a,b]'"
        )
    columns = None
    if match.group("columns") is not None:
        columns = [c.strip() for c in match.group("columns").split(",") if c.strip()]
    return match.group("name").strip(), columns


def resolve_input(omega: Any, value: Any, lineage: list[dict[str, Any]], role: str) -> Any:
    """A dataset name (``"sales"``, ``"sales@v2[a,b]"``) is read here; data passes through."""
    if not isinstance(value, str):
        return value
    name, columns = parse_input(value)
    meta = omega.datasets.metadata(name)
    data = omega.datasets.get(name, version=meta.version, columns=columns)
    lineage.append(
        {
            "role": role,
            "dataset": meta.name,
            "version": meta.version,
            "columns": columns,
            "bucket": meta.bucket,
        }
    )
    return as_target(data) if role == "Y" else data


def as_target(data: Any) -> Any:
    """A one-column frame or array as the 1-d target scikit-learn expects; else unchanged."""
    if getattr(data, "ndim", 1) == 2 and data.shape[1] == 1:
        return data.iloc[:, 0] if hasattr(data, "iloc") else data.ravel()
    return data


def _with_index(result: Any, X: Any, model: Any, method: str) -> Any:
    """A method's array result as a DataFrame on the input's index, with named columns
    (``predict``; ``predict_proba`` by class), so stored results join back to the input."""
    import numpy as np
    import pandas as pd

    index = getattr(X, "index", None)
    if not isinstance(result, np.ndarray) or index is None or len(index) != len(result):
        return result
    if result.ndim == 1:
        return pd.DataFrame({method: result}, index=index)
    if result.ndim == 2:
        classes = getattr(model, "classes_", None)
        if (
            method in ("predict_proba", "decision_function")
            and classes is not None
            and len(classes) == result.shape[1]
        ):
            names = [f"{method}_{c}" for c in classes]
        else:
            names = [f"{method}_{i}" for i in range(result.shape[1])]
        return pd.DataFrame(result, index=index, columns=names)
    return result


def run_model_task(
    omega: Any,
    model_meta: Metadata,
    method: str,
    X: Any = None,
    Y: Any = None,
    params: dict[str, Any] | None = None,
    result_name: str | None = None,
    *,
    claim: Callable[[], None] | None = None,
) -> Any:
    """Run ``model.<method>(X, Y, **params)`` for one stored model version.

    ``fit``/``partial_fit`` store the fitted model as a new version whose lineage names the
    datasets and versions it was trained on, and return its Metadata. Other methods return
    their result, or store it as dataset ``result_name`` and return that Metadata.
    ``claim`` is called right before the first write (:func:`~omfs.compute.claims.claim_write`:
    it raises TaskCancelledError for a task cancelled first, which then writes nothing).
    """
    if method not in METHODS:
        raise UsageError(f"Unknown model task {method!r}; use one of {list(METHODS)}")
    params = dict(params or {})
    lineage: list[dict[str, Any]] = []
    model = load_model(omega, model_meta)
    args = [
        resolve_input(omega, value, lineage, role)
        for value, role in ((X, "X"), (Y, "Y"))
        if value is not None
    ]
    _check_method(model, model_meta, method)
    if method in FITTING:
        model = copy.deepcopy(model)  # the cached instance stays as stored
        getattr(model, method)(*args, **params)
        _claimed(claim)
        return _store_fitted(omega, model, model_meta, method, params, lineage)
    result = getattr(model, method)(*args, **params)
    if result_name is None:
        return result
    _claimed(claim)
    data = _with_index(result, args[0] if args else None, model, method)
    return _store_result(omega, data, result_name, model_meta, method, lineage)


def _claimed(claim: Callable[[], None] | None) -> None:
    if claim is not None:
        claim()


def _check_method(model: Any, meta: Metadata, method: str) -> None:
    """Refuse a model without ``method`` (a stored object that is no estimator)."""
    if not callable(getattr(model, method, None)):
        raise InvalidModelError(
            f"Model {meta.name!r}@v{meta.version} is a {meta.kind}, which "
            f"has no {method}() method. Store an estimator that has one."
        )


def _store_fitted(
    omega: Any,
    model: Any,
    meta: Metadata,
    method: str,
    params: dict[str, Any],
    lineage: list[dict[str, Any]],
) -> Metadata:
    """Store a fitted model as the next version, its lineage naming what it was fit on."""
    stored: Metadata = omega.models.put(
        model,
        meta.name,
        attributes=dict(meta.attributes),
        lineage={
            "trained_on": lineage,
            "task": {
                "method": method,
                "params": {k: plain_param(v) for k, v in params.items()},
                "from_version": meta.version,
                "at": utcnow(),
                "host": socket.gethostname(),
            },
        },
    )
    return stored


def plain_param(value: Any) -> Any:
    """A parameter as lineage keeps it: a JSON scalar as itself (so ``Model(**params)``
    works), anything else (an array, an object) as its ``repr``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)


def _store_result(
    omega: Any,
    data: Any,
    result_name: str,
    meta: Metadata,
    method: str,
    lineage: list[dict[str, Any]],
) -> Metadata:
    """Store a method's result as dataset ``result_name``, saying which model made it."""
    stored: Metadata = omega.datasets.put(
        data,
        result_name,
        attributes={
            "produced_by": {
                "model": meta.name,
                "version": meta.version,
                "method": method,
                "inputs": lineage,
            }
        },
    )
    return stored


# -- recorded tasks (what the runtime submits) ----------------------------------------------
class _Capture(logging.Handler):
    """The log records and warnings of one task: those emitted on its thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(self.format(record))


_captures = threading.local()
_show_warning = warnings.showwarning


def _route_warning(message: Any, category: Any, filename: str, lineno: int, *a: Any) -> None:
    """``warnings.showwarning`` of a worker: into the running task's log, if any."""
    capture = getattr(_captures, "current", None)
    if capture is None:
        _show_warning(message, category, filename, lineno, *a)
        return
    capture.lines.append(f"{category.__name__}: {message} ({filename}:{lineno})")


@contextlib.contextmanager
def _captured() -> Iterator[_Capture]:
    """Capture this thread's log records (INFO and up) and every warning while the task
    runs: each goes to the log of the task whose thread emitted it."""
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    _captures.current = capture
    try:
        with _warnings_routed():
            yield capture
    finally:
        _captures.current = None
        root.removeHandler(capture)


class _Routing:
    """Warnings filters and ``showwarning`` are process-wide, and ``catch_warnings`` is
    not safe beside other threads (two tasks on a threaded worker each restored the state
    the other had saved). So the first running task of the process routes warnings (every
    warning shown, through :func:`_route_warning`), and the last one to end restores them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.saved: Any = None


_routing = _Routing()


@contextlib.contextmanager
def _warnings_routed() -> Iterator[None]:
    with _routing.lock:
        if _routing.active == 0:
            _routing.saved = warnings.catch_warnings()
            _routing.saved.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = _route_warning  # type: ignore[assignment]
        _routing.active += 1
    try:
        yield
    finally:
        with _routing.lock:
            _routing.active -= 1
            if _routing.active == 0:
                _routing.saved.__exit__(None, None, None)
                _routing.saved = None


def _worker_name() -> dict[str, Any]:
    try:
        from distributed import get_worker

        worker = get_worker()
        doc = {"worker": worker.address, "worker_name": str(worker.name)}
        # its Dask key: any process can cancel the running task by id, also one submitted
        # by a script that is still running (whose submitted record is written at its exit)
        key = worker.get_current_task()
        return doc | ({"key": str(key)} if key is not None else {})
    except (ImportError, ValueError):
        return {"worker": f"local:{socket.gethostname()}", "worker_name": "local"}


class _Starts:
    """Writes the ``started`` record of a task that runs longer than ``after`` seconds, and
    rewrites it every ``every`` seconds while the task runs (its heartbeat: ``beat``), from
    one thread per process. A quick task writes only its ``finished`` record, which says
    when and where it started too."""

    def __init__(self, after: float = 0.2, every: float = TASK_HEARTBEAT):
        self.after, self.every = after, every
        self._due: dict[str, tuple[float, Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, storage: Any, task_id: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._due[task_id] = (time.monotonic() + self.after, storage, doc)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="omfs-starts")
                self._thread.start()

    def done(self, task_id: str) -> None:
        with self._lock:
            self._due.pop(task_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.after / 2)
            now = time.monotonic()
            with self._lock:
                due = [(k, v) for k, v in self._due.items() if v[0] <= now]
                for task_id, (_, storage, doc) in due:  # the next beat
                    self._due[task_id] = (now + self.every, storage, doc)
            for task_id, (_, storage, doc) in due:
                with contextlib.suppress(Exception):  # a record only: the task runs on
                    write_record(storage, task_id, "started", {**doc, "beat": utcnow()})


_starts = _Starts()


def run_recorded(
    omega: Any,
    task_id: str,
    *args: Any,
    route: dict[str, float] | None = None,
    call: Any = None,
    guard: bool = False,
    **kwargs: Any,
) -> Any:
    """:func:`run_model_task`, recorded under ``_tasks/ID.*`` (:func:`record_run`). ``args``
    are run_model_task's (model metadata, method, ...); ``route``: the resources it asked
    for; ``call``: run ``call()`` instead (a task of another kind on that model, which
    writes: it is claimed first); ``guard``: claim the task before it writes (one that can
    be cancelled: :mod:`omfs.compute.claims`)."""
    meta, method = args[0], args[1]

    def work(claim: Callable[[], None]) -> Any:
        if call is not None:
            claim()
            return call()
        return run_model_task(omega, *args, claim=claim if guard else None, **kwargs)

    where = f"models/{meta.name}@v{meta.version}"
    return record_run(omega.storage, task_id, work, action=method, what=where, route=route)


def record_run(
    storage: Any,
    task_id: str,
    work: Callable[[Callable[[], None]], Any],
    *,
    action: str,
    what: str,
    route: dict[str, float] | None = None,
) -> Any:
    """Run ``work(claim)`` recorded under ``_tasks/ID.*`` as it starts and ends: the value
    (Parquet or JSON), or the error; the log and warnings it emitted. ``what``: the object
    the task is about (the record's ``object``); ``claim()`` claims the task right before
    its first write (it raises TaskCancelledError once cancelled)."""
    started = {"at": utcnow(), **_worker_name(), "action": action, "route": route or {}}
    started["object"] = what
    started |= {"host": socket.gethostname(), "pid": os.getpid(), "beat_every": _starts.every}
    _starts.add(storage, task_id, started)
    with _captured() as capture:
        try:
            label = f"{action}({what.removeprefix('models/')})"
            value = work(functools.partial(claim_write, storage, task_id, label))
        except BaseException as exc:
            _starts.done(task_id)
            capture.lines.append(traceback.format_exc())
            _finish_log(storage, task_id, capture)
            status = "cancelled" if isinstance(exc, TaskCancelledError) else "failed"
            error = error_text(exc)
            write_record(storage, task_id, "finished", finished_doc(status, error, started=started))
            if isinstance(exc, Exception) or started.get("worker_name") == "local":
                raise
            # KeyboardInterrupt or SystemExit from model code: on a Dask worker it would
            # stop the worker (and each one Dask retries the task on), not fail the task
            raise TaskFailedError(f"{label} raised {error}") from None
    _starts.done(task_id)
    try:
        doc, parquet = encode_value(value)
    except UnstorableResultError as exc:
        capture.lines.append(f"omfs: the result was not stored: {exc}")
        doc, parquet = {"format": "refused", "refused": str(exc)}, None
    if parquet is not None and len(parquet) <= INLINE_PARQUET:
        doc["inline"] = base64.b64encode(parquet).decode()  # one file per quick task
    elif parquet is not None:
        storage.write_bytes(record_key(task_id, "result.parquet"), parquet, durable=False)
    _finish_log(storage, task_id, capture)
    write_record(
        storage, task_id, "finished", finished_doc("succeeded", result=doc, started=started)
    )
    return value


def _finish_log(storage: Any, task_id: str, capture: _Capture) -> None:
    if capture.lines:
        text = "\n".join(capture.lines).rstrip() + "\n"
        storage.write_bytes(record_key(task_id, "log.txt"), text.encode(), durable=False)

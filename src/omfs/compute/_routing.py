"""Runtime routing: resource requirements in the Dask way, checked before submitting.

Routes are checked against a :class:`WorkerView`: the workers as the scheduler last told,
refreshed every few seconds and once more before a route is refused, so that a burst of
submits costs no round trip each and a stale view never fails a task.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from omfs.compute.resources import ResourceSpec
from omfs.errors import ResourceUnavailableError

__all__ = [
    "Route",
    "WorkerView",
    "check_satisfiable",
    "describe_workers",
    "fetch_workers",
    "ping_workers",
    "satisfies",
]

#: how long a view of the workers is used before it is asked again (seconds)
VIEW_TTL = 2.0


def fetch_workers(client: Any) -> list[dict[str, Any]]:
    """Every worker, asked of the scheduler now. (``client.scheduler_info()`` returns a
    shared attribute that the client's periodic refresh overwrites with a view of *no*
    workers: read at the wrong moment it says the cluster has none.)"""
    info = client.sync(client.scheduler.identity, n_workers=-1)
    return describe_workers(info)


class WorkerView:
    """The workers of one client as last fetched; :meth:`check` refuses a route only
    against a fresh answer."""

    def __init__(self, ttl: float = VIEW_TTL):
        self.ttl = ttl
        self._rows: list[dict[str, Any]] = []
        self._at = float("-inf")
        self._lock = threading.Lock()

    def rows(self, client: Any, *, fresh: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            if fresh or time.monotonic() - self._at > self.ttl:
                self._rows = fetch_workers(client)
                self._at = time.monotonic()
            return self._rows

    def check(
        self, client: Any, needs: dict[str, float], what: str, route: Route | None = None
    ) -> None:
        """Pass when some worker satisfies ``needs`` in the cached view; else ask the
        scheduler once more and raise only if the fresh answer has none either."""
        if any(satisfies(w, needs) for w in self.rows(client)):
            return
        check_satisfiable(self.rows(client, fresh=True), needs, what, route)


def satisfies(worker: dict[str, Any], needs: dict[str, float]) -> bool:
    """Whether ``worker`` (a row of :func:`describe_workers`) offers everything in ``needs``."""
    offered = worker["resources"]
    return all(offered.get(name, 0) >= amount for name, amount in needs.items())


def describe_workers(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Workers of ``client.scheduler_info()`` as plain rows."""
    rows = []
    for address, worker in sorted(info.get("workers", {}).items()):
        rows.append(
            {
                "address": address,
                "name": worker.get("name"),
                "resources": dict(worker.get("resources") or {}),
                "nthreads": worker.get("nthreads"),
                "memory_limit": worker.get("memory_limit"),
            }
        )
    return rows


@dataclass(frozen=True)
class Route:
    """Where a task is routed, for the advice of a routing error: which cluster (``kind``
    of :attr:`ClusterHandle.kind <omfs.compute.cluster.ClusterHandle.kind>`), its scheduler
    address, and the model's ``require`` attribute when the requirement came from it."""

    kind: str = "external"
    address: str | None = None
    from_model: Any = None

    def start_worker(self, wanted: ResourceSpec) -> str:
        """How to add a worker offering ``wanted``: ``dask worker`` for a scheduler of the
        user's own, ``om cluster start --worker`` where omfs runs the cluster."""
        resources = wanted.text(sort=False)
        if self.kind == "external":
            address = self.address or "SCHEDULER_ADDRESS"
            start = f'`dask worker {address} --resources "{resources}"`'
            return f"Start one with {start}"
        restart = "om cluster stop && " if self.kind == "background" else ""
        start = f"`{restart}om cluster start --worker {resources or 'NAME=1'}`"
        where = "the background cluster" if restart else "the cluster omfs starts"
        return f"Give {where} such a worker: {start}"

    def start_workers(self, wanted: ResourceSpec) -> str:
        """How to get workers (offering ``wanted``, if anything) on a cluster with none."""
        if self.kind == "background":
            worker = f" --worker {wanted.text(sort=False)}" if wanted.amounts else ""
            return f"Restart the background cluster: `om cluster stop && om cluster start{worker}`"
        if wanted.amounts:
            return self.start_worker(wanted)
        address = self.address or "SCHEDULER_ADDRESS"
        return f"Start workers (`dask worker {address}`)"

    def override(self) -> tuple[str, str]:
        """What follows the advice: where the requirement came from and how to override it,
        or how to change it (in Python's terms, in the CLI's)."""
        if self.from_model is None:
            return ", or change require().", ", or change --require."
        said = f". The requirement comes from the model's attributes (require={self.from_model!r})"
        return (
            f"{said}: override it with runtime.require(...), or runtime.require() for any worker.",
            f"{said}: override it with --require LABEL, or --require none for any worker.",
        )


def check_satisfiable(
    workers: list[dict[str, Any]], needs: dict[str, float], what: str, route: Route | None = None
) -> None:
    """Raise at once when no single worker offers every resource in ``needs``."""
    route = route or Route()
    if not workers:
        start = route.start_workers(ResourceSpec(needs))
        raise ResourceUnavailableError(
            f"The cluster has no workers to run {what}.",
            hint=f"{start}, or use runtime.mode(local=True).",
            cli_hint=f"{start}, or use `om runtime --local`.",
        )
    if not needs:
        return
    if any(satisfies(w, needs) for w in workers):
        return
    raise _unsatisfiable(workers, ResourceSpec(needs), what, route)


def _unsatisfiable(
    workers: list[dict[str, Any]], wanted: ResourceSpec, what: str, route: Route
) -> ResourceUnavailableError:
    missing = sorted(n for n in wanted.amounts if not any(n in w["resources"] for w in workers))
    lacking = f"resource {missing[0]!r}" if len(missing) == 1 else f"resources {missing}"
    if not missing:
        lacking = "enough of " + wanted.describe()
    listing = "; ".join(
        f"{w['name'] or w['address']} offers {ResourceSpec(w['resources']).describe()}"
        for w in workers
    )
    start = route.start_worker(wanted)
    override, cli_override = route.override()
    return ResourceUnavailableError(
        f"No worker can run {what}: it requires {wanted.describe()} and no worker offers "
        f"{lacking}. Workers: {listing}.",
        hint=f"{start}{override}",
        cli_hint=f"{start}{cli_override}",
    )


def _pong() -> float:
    return time.time()


def ping_workers(
    client: Any, needs: dict[str, float], timeout: float = 10, route: Route | None = None
) -> list[dict[str, Any]]:
    """Send a tiny task to each worker that satisfies ``needs`` and time its answer: rows
    of address, name, resources, ``rtt_ms`` and ``state`` (``answered``; ``busy`` for a
    worker whose threads all ran other tasks meanwhile: alive, but the ping waited; or ``no
    answer``, listed beside workers that answered). A one-line ResourceUnavailableError
    names the route and how to start such a worker when none answers and none is busy."""
    candidates = [w for w in fetch_workers(client) if satisfies(w, needs)]
    started = time.perf_counter()
    futures = {
        client.submit(
            _pong,
            key=f"omfs-ping-{time.time_ns()}-{i}",
            workers=[w["address"]],
            allow_other_workers=False,
            resources=needs or None,
            pure=False,
        ): w
        for i, w in enumerate(candidates)
    }
    answered = _answers(futures, started, timeout)
    rows, silent = [], []
    for future, worker in futures.items():
        if future.status == "finished" and worker["address"] in answered:
            rtt = round(answered[worker["address"]], 2)
            rows.append({**worker, "rtt_ms": rtt, "state": "answered"})
        else:
            future.cancel()
            silent.append(worker)
    rows += _busy_rows(client, silent, {f.key for f in futures})
    if not rows:
        raise ResourceUnavailableError(
            _no_answer(needs, len(candidates), timeout, route or Route())
        )
    listed = {r["address"] for r in rows}
    for worker in silent:  # alive for the scheduler; a long task (a cancelled one: Dask
        if worker["address"] not in listed:  # cannot stop its thread) may hold its thread
            rows.append({**worker, "rtt_ms": None, "state": f"no answer in {timeout:g} s"})
    return rows


def _busy_rows(client: Any, silent: list[dict[str, Any]], pings: set[str]) -> list[dict[str, Any]]:
    """Rows of the workers in ``silent`` that the scheduler says run other tasks (a ping is
    a task: it waits for a free thread)."""
    if not silent:
        return []
    try:
        processing = client.processing(workers=[w["address"] for w in silent])
    except Exception:  # the scheduler went away: they did not answer, that is all
        return []
    rows = []
    for worker in silent:
        others = [k for k in processing.get(worker["address"], ()) if str(k) not in pings]
        if others:
            rows.append({**worker, "rtt_ms": None, "state": f"busy ({len(others)} task(s))"})
    return rows


def _no_answer(needs: dict[str, float], candidates: int, timeout: float, route: Route) -> str:
    """The one line of a ping that no worker answered."""
    wanted = ResourceSpec(needs)
    if candidates:
        why = f"none of its {candidates} worker(s) answered within {timeout:g} s (stuck?)"
        restart = "Restart the cluster (`om cluster stop && om cluster start`)"
        start = restart if route.kind == "background" else route.start_workers(wanted)
    elif not needs:
        why, start = "the cluster has no workers", route.start_workers(wanted)
    else:
        why, start = "no worker offers it", route.start_worker(wanted)
    where = f" on route {wanted.describe()}" if needs else ""
    return f"No worker answered a ping{where}: {why}. {start}."


def _answers(
    futures: dict[Any, dict[str, Any]], started: float, timeout: float
) -> dict[str, float]:
    """Milliseconds from ``started`` to each ping's answer, by worker address, waiting up
    to ``timeout`` seconds in all."""
    from concurrent.futures import CancelledError

    from distributed import TimeoutError as DaskTimeout

    answered: dict[str, float] = {}
    for future in futures:
        future.add_done_callback(
            lambda f, w=futures[future]: answered.setdefault(
                w["address"], (time.perf_counter() - started) * 1e3
            )
        )
    # each future waited on through its own client (distributed.wait asks the process's
    # default client, which may be another one, bound to another event loop)
    deadline = time.monotonic() + timeout
    for future, worker in futures.items():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError, DaskTimeout, CancelledError):
            future.result(timeout=left)
            # the callback runs in Dask's callback thread, maybe not yet: then now is when
            answered.setdefault(worker["address"], (time.perf_counter() - started) * 1e3)
    return answered

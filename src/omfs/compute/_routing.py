"""Runtime routing: resource requirements in the Dask way, checked before submitting.

Routes are checked against a :class:`WorkerView`: the workers as the scheduler last told,
refreshed every few seconds and once more before a route is refused, so that a burst of
submits costs no round trip each and a stale view never fails a task.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from omfs.compute.resources import ResourceSpec
from omfs.errors import ResourceUnavailableError

__all__ = ["WorkerView", "check_satisfiable", "describe_workers", "fetch_workers", "satisfies"]

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

    def check(self, client: Any, needs: dict[str, float], what: str) -> None:
        """Pass when some worker satisfies ``needs`` in the cached view; else ask the
        scheduler once more and raise only if the fresh answer has none either."""
        if any(satisfies(w, needs) for w in self.rows(client)):
            return
        check_satisfiable(self.rows(client, fresh=True), needs, what)


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


def check_satisfiable(workers: list[dict[str, Any]], needs: dict[str, float], what: str) -> None:
    """Raise at once when no single worker offers every resource in ``needs``."""
    if not workers:
        raise ResourceUnavailableError(
            f"The cluster has no workers to run {what}.",
            hint="Start workers (`dask worker SCHEDULER_ADDRESS`) or use runtime.mode(local=True).",
            cli_hint="Start workers (`dask worker SCHEDULER_ADDRESS`) or use `om runtime --local`.",
        )
    if not needs:
        return
    if any(satisfies(w, needs) for w in workers):
        return
    missing = sorted(n for n in needs if not any(n in w["resources"] for w in workers))
    lacking = f"resource {missing[0]!r}" if len(missing) == 1 else f"resources {missing}"
    wanted = ResourceSpec(needs)
    if not missing:
        lacking = "enough of " + wanted.describe()
    listing = "; ".join(
        f"{w['name'] or w['address']} offers {ResourceSpec(w['resources']).describe()}"
        for w in workers
    )
    raise ResourceUnavailableError(
        f"No worker can run {what}: it requires {wanted.describe()} and no worker offers "
        f"{lacking}. Workers: {listing}. Start one with `dask worker SCHEDULER_ADDRESS "
        f'--resources "{wanted.text(sort=False)}"`, or change require().'
    )


def _pong() -> float:
    return time.time()


def ping_workers(client: Any, needs: dict[str, float], timeout: float = 10) -> list[dict[str, Any]]:
    """Send a tiny task to each worker that satisfies ``needs`` and time its answer: rows
    of address, name, resources and ``rtt_ms``. A one-line ResourceUnavailableError names
    the route and how to start such a worker when none answers."""
    from distributed import TimeoutError as DaskTimeout
    from distributed import wait

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
    answered: dict[str, float] = {}
    for future in futures:
        future.add_done_callback(
            lambda f, w=futures[future]: answered.setdefault(
                w["address"], (time.perf_counter() - started) * 1e3
            )
        )
    if futures:
        with contextlib.suppress(TimeoutError, DaskTimeout):
            wait(list(futures), timeout=timeout)
    rows = []
    for future, worker in futures.items():
        if future.status == "finished" and worker["address"] in answered:
            rows.append({**worker, "rtt_ms": round(answered[worker["address"]], 2)})
        else:
            future.cancel()
    if not rows:
        route = ResourceSpec(needs)
        start = f"om cluster start --worker {route.text() or 'gpu=1'}"
        why = (
            f"none of the {len(candidates)} worker(s) offering it answered within {timeout:g} s"
            if candidates
            else "no worker offers it"
        )
        raise ResourceUnavailableError(
            f"No worker answered a ping on route {route.describe()}: {why}. Start one that "
            f"offers it (`{start}`, or `dask worker SCHEDULER_ADDRESS --resources "
            f'"{route.text() or "gpu=1"}"`).'
        )
    return rows

"""Runtime routing: resource requirements in the Dask way, checked before submitting."""

from __future__ import annotations

from typing import Any

from omfs.compute.resources import ResourceSpec
from omfs.errors import ResourceUnavailableError

__all__ = ["check_satisfiable", "describe_workers"]


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
    for worker in workers:
        offered = worker["resources"]
        if all(offered.get(name, 0) >= amount for name, amount in needs.items()):
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

"""Runtime routing: resource requirements in the Dask way, checked before submitting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omfs.compute.resources import ResourceSpec
from omfs.errors import ResourceUnavailableError

__all__ = ["Route", "check_satisfiable", "describe_workers"]


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

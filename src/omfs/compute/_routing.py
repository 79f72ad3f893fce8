"""Runtime routing: resource requirements in the Dask way, checked before submitting."""

from __future__ import annotations

from typing import Any

from omfs.errors import ResourceUnavailableError, UsageError

__all__ = ["check_satisfiable", "describe_workers", "resources_from"]


def resources_from(label: str | None = None, **amounts: float) -> dict[str, float]:
    """``require("gpu")`` -> ``{"gpu": 1}``; ``require(gpu=2, memory=16e9)`` -> as given."""
    resources: dict[str, float] = {}
    if label is not None:
        if not isinstance(label, str) or not label.strip():
            raise UsageError(f"A resource label is a non-empty string such as 'gpu', got {label!r}")
        resources[label.strip()] = 1
    for name, amount in amounts.items():
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
            raise UsageError(f"Resource {name}={amount!r} must be a positive number")
        resources[name] = amount
    return resources


def resources_from_attributes(require: Any) -> dict[str, float]:
    """A model's ``attributes["require"]``: ``"gpu"``, ``{"label": "gpu"}`` or ``{"gpu": 1}``."""
    if require is None:
        return {}
    if isinstance(require, str):
        return resources_from(require)
    if isinstance(require, dict):
        spec = dict(require)
        label = spec.pop("label", None)
        return resources_from(label, **spec)
    raise UsageError(
        f"The model attribute require={require!r} is not understood: use 'gpu', "
        "{'label': 'gpu'} or a resources dict such as {'gpu': 1}"
    )


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


def _offers(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())) or "no resources"


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
    if not missing:
        lacking = "enough of " + _offers(needs)
    listing = "; ".join(
        f"{w['name'] or w['address']} offers {_offers(w['resources'])}" for w in workers
    )
    flag = ",".join(f"{k}={v:g}" for k, v in needs.items())
    raise ResourceUnavailableError(
        f"No worker can run {what}: it requires {_offers(needs)} and no worker offers "
        f"{lacking}. Workers: {listing}. Start one with `dask worker SCHEDULER_ADDRESS "
        f'--resources "{flag}"`, or change require().'
    )

"""A process that updates one model's attributes, moves a tag of its own and drops versions
of its own, many times (the no-lost-update test runs four of them at once)."""

from __future__ import annotations

from typing import Any

import omfs

#: versions 1 and 2 stay; each worker drops five versions of its own among 3 ... 22
FIRST_DROPPED = 3
DROPS_PER_WORKER = 5


def dropped_by(worker: int) -> list[int]:
    """The versions ``worker`` drops."""
    first = FIRST_DROPPED + worker * DROPS_PER_WORKER
    return list(range(first, first + DROPS_PER_WORKER))


def update_many(root: str, options: dict[str, Any], worker: int, count: int) -> None:
    om = omfs.setup(root, storage_options=options)
    drops = dropped_by(worker)
    every = max(1, count // len(drops))
    for i in range(count):
        om.models.update_attributes("m", {f"w{worker}-{i}": i}, version=2)
        om.models.tag(f"m@v{1 + (i % 2)}", f"t{worker}")
        if i % every == 0 and drops:
            om.models.drop(f"m@v{drops.pop(0)}")

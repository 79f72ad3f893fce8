"""A process that updates one model's attributes and moves a tag of its own, many times
(the no-lost-update test runs four of them at once)."""

from __future__ import annotations

from typing import Any

import omfs


def update_many(root: str, options: dict[str, Any], worker: int, count: int) -> None:
    om = omfs.setup(root, storage_options=options)
    for i in range(count):
        om.models.update_attributes("m", {f"w{worker}-{i}": i})
        om.models.tag(f"m@v{1 + (i % 2)}", f"t{worker}")

"""Small helpers of the templates: Jinja filters and the geometry of the serving plot."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FILTERS", "PALETTE", "plot"]

#: line colours of the serving plot (colour-blind friendly, Okabe-Ito)
#: what a missing value reads as (an en dash)
NONE = "\u2013"
#: (palette below)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def size(value: Any) -> str:
    """Bytes as ``12.3 MB``; a dash when unknown."""
    if not isinstance(value, int | float):
        return NONE
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{amount:.1f} TB"


def when(value: Any) -> str:
    """An ISO time as ``2026-03-01 12:00:05 UTC`` (seconds, no fraction)."""
    if value is None:
        return NONE
    text = str(value)
    if len(text) >= 19 and text[10] == "T":
        zone = " UTC" if text.endswith(("+00:00", "Z")) else ""
        return f"{text[:10]} {text[11:19]}{zone}"
    return text


def as_json(value: Any) -> str:
    """A value as indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def number(value: Any) -> str:
    """An integer with thousands separators; a dash when unknown."""
    return f"{value:,}" if isinstance(value, int) else NONE


FILTERS = {"size": size, "when": when, "as_json": as_json, "number": number}


def plot(data: dict[str, Any], width: int = 720, height: int = 180) -> dict[str, Any]:
    """Two charts (requests per bin, median latency per bin) as polyline points per series,
    with the axes' maxima and the legend colours."""
    bins = max(1, data["bins"])
    max_count = max((c for s in data["series"] for _, c, _ in s["points"]), default=1)
    max_ms = max((m for s in data["series"] for _, _, m in s["points"]), default=1.0) or 1.0
    step = (width - 60) / max(1, bins - 1)
    lines = []
    for i, series in enumerate(data["series"]):
        xs = [50 + b * step for b, _, _ in series["points"]]
        counts = [height - 20 - c / max_count * (height - 40) for _, c, _ in series["points"]]
        latency = [height - 20 - m / max_ms * (height - 40) for _, _, m in series["points"]]
        lines.append(
            {
                "name": series["name"],
                "total": series["total"],
                "colour": PALETTE[i % len(PALETTE)],
                "requests": " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, counts, strict=True)),
                "latency": " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, latency, strict=True)),
            }
        )
    return {
        "lines": lines,
        "width": width,
        "height": height,
        "max_count": max_count,
        "max_ms": max_ms,
        "start": data["start"],
        "end": data["end"],
    }

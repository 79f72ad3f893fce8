"""Request counts and latencies per model and version, in the Prometheus text format."""

from __future__ import annotations

import bisect
from collections import defaultdict

__all__ = ["BUCKETS", "Metrics"]

#: latency histogram bounds, in seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters kept by the event loop's thread; :meth:`render` is ``GET /metrics``."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts, sum, count

    def observe(self, model: str, version: str, action: str, status: int, seconds: float) -> None:
        """Count one answer of ``model`` ``version`` and its latency."""
        self.requests[(model, version, action, status)] += 1
        key = (model, version)
        hist = self.latency.get(key)
        if hist is None:
            hist = self.latency[key] = [0.0] * (len(BUCKETS) + 3)
        hist[bisect.bisect_left(BUCKETS, seconds)] += 1
        hist[-2] += seconds
        hist[-1] += 1

    def render(self, reload_failures: dict[str, int] | None = None) -> str:
        """The Prometheus text exposition of every counter and histogram (and of
        ``reload_failures``: model -> new versions refused by their integrity check)."""
        lines = [
            "# HELP omfs_requests_total Model requests answered, by model, version, action "
            "and status.",
            "# TYPE omfs_requests_total counter",
        ]
        for (model, version, action, status), n in sorted(self.requests.items()):
            labels = _labels(model=model, version=version, action=action, status=str(status))
            lines.append(f"omfs_requests_total{{{labels}}} {n}")
        lines += [
            "# HELP omfs_request_seconds Model request latency, by model and version.",
            "# TYPE omfs_request_seconds histogram",
        ]
        for (model, version), hist in sorted(self.latency.items()):
            base = _labels(model=model, version=version)
            total = 0.0
            for bound, count in zip((*BUCKETS, float("inf")), hist, strict=False):
                total += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'omfs_request_seconds_bucket{{{base},le="{le}"}} {int(total)}')
            lines.append(f"omfs_request_seconds_sum{{{base}}} {hist[-2]}")
            lines.append(f"omfs_request_seconds_count{{{base}}} {int(hist[-1])}")
        lines += [
            "# HELP omfs_reload_failures_total New versions not served: they failed their "
            "integrity check (the previous version answers).",
            "# TYPE omfs_reload_failures_total counter",
        ]
        for model, n in sorted((reload_failures or {}).items()):
            lines.append(f"omfs_reload_failures_total{{{_labels(model=model)}}} {n}")
        return "\n".join(lines) + "\n"


def _labels(**values: str) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{escape(v)}"' for k, v in values.items())

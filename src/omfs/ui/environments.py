"""The environments page: the named contexts side by side, and what differs between two.

An environment is the context ``om ui`` opened (``current``) or a named context of the
config file. The comparison is what :func:`omfs.ops.sync.sync` would do in each direction,
as a dry run (one listing of each side's bucket; nothing is written).
"""

from __future__ import annotations

from typing import Any

from omfs import config
from omfs.errors import OmfsError

__all__ = ["CURRENT", "compare", "environment_names", "environments", "open_environment"]

#: the name of the context ``om ui`` opened, on the environments page
CURRENT = "current"
_STORES = ("datasets", "models", "jobs")


def environment_names() -> list[str]:
    """``current``, then the named contexts of the config file."""
    try:
        named = list(config.contexts())
    except OmfsError:
        named = []
    return [CURRENT, *named]


def open_environment(om: Any, name: str) -> Any:
    """The context an environment name stands for (``current``: ``om`` itself)."""
    from omfs.context import setup

    if name == CURRENT:
        return om
    if name not in environment_names():
        raise OmfsError(f"No environment {name!r}: 'om contexts add' names one")
    return setup(context=name)


def _counts(ctx: Any) -> list[dict[str, Any]]:
    """Per bucket of ``ctx``: how many datasets, models and jobs it holds (a listing each)."""
    rows = []
    for bucket in ctx.buckets:
        here = ctx[bucket]
        row: dict[str, Any] = {"bucket": bucket}
        for store in _STORES:
            try:
                row[store] = len(getattr(here, store).list())
            except (OmfsError, OSError):
                row[store] = None
        rows.append(row)
    return rows


def environments(om: Any) -> list[dict[str, Any]]:
    """Every environment: name, root, bucket, cluster, default/remote, and its buckets with
    counts (``error`` instead when it cannot be opened)."""
    problem: str | None = None
    try:
        named = config.contexts()
    except OmfsError as exc:
        named, problem = {}, str(exc)
    out = [
        {
            "name": CURRENT,
            "root": om.root,
            "bucket": om.bucket,
            "cluster": om.cluster.describe(),
            "default": False,
            "remote": False,
            "buckets": _counts(om),
            "error": problem,
        }
    ]
    for name, entry in named.items():
        row = {"name": name, **{k: entry.get(k) for k in ("root", "bucket", "cluster")}}
        row.update(default=entry["default"], remote=entry["remote"], error=None, buckets=[])
        try:
            row["buckets"] = _counts(open_environment(om, name))
        except (OmfsError, OSError) as exc:
            row["error"] = " ".join(str(exc).split())
        out.append(row)
    return out


def compare(a: Any, b: Any, bucket: str | None = None) -> list[dict[str, Any]]:
    """What differs between contexts ``a`` and ``b`` (one bucket, or all of either side's):
    per object ``state`` (``only in A``, ``only in B``, ``A ahead``, ``B ahead``,
    ``diverged``, ``same``), the commits each side has, and the tags each side has."""
    from omfs.ops.sync import sync

    def objects(source: Any, target: Any) -> list[dict[str, Any]]:
        """The rows of a dry-run sync of the buckets (of those asked) the source has."""
        have = [bk for bk in ([bucket] if bucket else source.buckets) if bk in source.buckets]
        if not have:
            return []
        report = sync(source, target, buckets=have, dry_run=True)
        return [row.to_dict() for row in report.objects]

    ab, ba = objects(a, b), objects(b, a)
    back = {(r["bucket"], r["store"], r["name"]): r for r in ba}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ab_row in ab:
        key = (ab_row["bucket"], ab_row["store"], ab_row["name"])
        rows[key] = _row(key, ab_row, back.get(key))
    for key, ba_row in back.items():
        if key not in rows:
            rows[key] = _row(key, None, ba_row)
    out = sorted(rows.values(), key=lambda r: (r["state"] == "same", r["bucket"], r["name"]))
    for row in out:
        if row["state"] != "same":
            row["tags_a"] = _tags(a, row)
            row["tags_b"] = _tags(b, row)
    return out


def _row(key: tuple[str, str, str], ab: Any, ba: Any) -> dict[str, Any]:
    """One object of a comparison, from the dry runs A→B (``ab``) and B→A (``ba``)."""
    bucket, store, name = key
    state = "same"
    action_ab = ab.get("action") if ab else None
    action_ba = ba.get("action") if ba else None
    if ab is None or (action_ba == "copy" and not ba["target_commits"]):
        state = "only in B"
    elif action_ab == "copy" and not ab["target_commits"]:
        state = "only in A"
    elif action_ab == "copy":
        state = "A ahead"
    elif action_ba == "copy":
        state = "B ahead"
    elif action_ab in ("diverged", "refused", "dropped"):
        state = "diverged" if action_ab == "diverged" else str(action_ab)
    commits_a = ab["source_commits"] if ab else (ba["target_commits"] if ba else 0)
    commits_b = ab["target_commits"] if ab else (ba["source_commits"] if ba else 0)
    return {
        "bucket": bucket,
        "store": store,
        "name": name,
        "state": state,
        "commits_a": commits_a,
        "commits_b": commits_b,
    }


def _tags(ctx: Any, row: dict[str, Any]) -> dict[str, int]:
    """The tags of one compared object on one side (empty when it has none there)."""
    try:
        state = getattr(ctx[row["bucket"]], row["store"]).state(row["name"])
    except (OmfsError, OSError):
        return {}
    return dict(state.tags) if state.exists else {}

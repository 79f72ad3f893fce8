"""``om sync``, ``om push`` and ``om pull``: replicate buckets between contexts."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from omfs.cli._common import (
    emit_table,
    emit_value,
    fail,
    progress_bar,
    shows_progress,
    state,
)

Buckets = Annotated[
    list[str] | None, typer.Option("--bucket", help="only this bucket (repeatable; default all)")
]
Names = Annotated[
    list[str] | None,
    typer.Option("--name", metavar="PATTERN", help="only names matching (glob, repeatable)"),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="say what would be copied")]
Rebase = Annotated[
    bool,
    typer.Option(
        "--rebase", help="re-commit diverged objects' source-only versions on top of the target"
    ),
]
Remote = Annotated[
    str | None,
    typer.Option("--remote", help="the remote context (default: `remote` in the config file)"),
]


def _run(
    source: Any, target: Any, buckets: Any, names: Any, dry_run: bool, rebase: bool = False
) -> None:
    import omfs

    chosen = {"buckets": buckets, "names": names}
    if dry_run:
        report = omfs.sync(source, target, dry_run=True, **chosen)
    else:
        total = objects = None
        if shows_progress():  # the bar's totals: a dry run, only where a bar is shown
            plan = omfs.sync(source, target, dry_run=True, **chosen)
            total, objects = plan["bytes"], len(plan["objects"])
        with progress_bar("sync", total, objects) as advance:
            report = omfs.sync(
                source,
                target,
                rebase=rebase,
                progress=advance,
                on_object=lambda row: advance(objects=1),
                **chosen,
            )
    if state.as_json:
        emit_value(report)
    else:
        rows = [
            {
                "bucket": r["bucket"],
                "object": f"{r['store']}/{r['name']}",
                "action": ("would copy" if dry_run and r["action"] == "copy" else r["action"]),
                "commits": f"{r['target_commits']} -> {r['source_commits']}",
                "bytes": r["bytes"],
            }
            for r in report["objects"]
            if r["action"] != "unchanged"
        ]
        emit_table(
            rows,
            ["bucket", "object", "action", "commits", "bytes"],
            empty=f"nothing to copy ({report['unchanged']} object(s) already in sync)",
        )
    refused = [r for r in report["objects"] if r["action"] == "refused"]
    if refused and not state.as_json:
        for r in refused:  # one line each: the object and the file that failed its check
            print(f"om: refused: {r['error']}", file=sys.stderr)
    diverged = [r for r in report["objects"] if r["action"] == "diverged"]
    if diverged:
        names_ = ", ".join(
            f"{r['bucket']}/{r['store']}/{r['name']} (source v{r.get('source_versions')}, "
            f"target v{r.get('target_versions')})"
            for r in diverged
        )
        more = f"; {len(refused)} refused (see above)" if refused else ""
        fail(f"{len(diverged)} object(s) diverged and were left unchanged: {names_}{more}")
    if refused:
        fail(
            f"{len(refused)} object(s) refused: the source does not hold what its log records "
            "(see above); they were left unchanged in the target, the others were synced"
        )


def sync(
    from_context: Annotated[str, typer.Option("--from-context", help="source context")],
    to_context: Annotated[str, typer.Option("--to-context", help="target context")],
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Replicate datasets and models with their history from one context to another."""
    _run(from_context, to_context, bucket, name, dry_run, rebase)


def _remote(remote: str | None) -> str:
    from omfs import config

    chosen = remote or config.remote()
    if chosen is None:
        fail('no remote context: pass --remote NAME or set remote = "NAME" in the config file', 2)
    return chosen  # type: ignore[return-value]


def push(
    remote: Remote = None,
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Sync this context (--context, --root or the default) to the remote context."""
    _run(state.omega(), _remote(remote), bucket, name, dry_run, rebase)


def pull(
    remote: Remote = None,
    bucket: Buckets = None,
    name: Names = None,
    dry_run: DryRun = False,
    rebase: Rebase = False,
) -> None:
    """Sync the remote context to this one."""
    _run(_remote(remote), state.omega(), bucket, name, dry_run, rebase)


def export(
    names: Annotated[
        list[str], typer.Argument(help="NAME, datasets/NAME or models/NAME (repeatable)")
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="the bundle (.tar) to write")],
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write objects with their whole history to a tar bundle (for air-gapped moves)."""
    import os

    import omfs

    if os.path.exists(output) and not force:
        fail(f"{output} exists; pass --force to overwrite it")
    manifest = omfs.export(state.omega(), names, output)
    size = sum(f["size"] for f in manifest["files"])
    if state.as_json:
        emit_value({"path": output, "objects": manifest["objects"], "bytes": size})
    else:
        print(f"om: wrote {output}: {len(manifest['objects'])} object(s), {size:,} bytes")


def import_(
    bundle: Annotated[str, typer.Argument(help="a bundle written by `om export`")],
    to_context: Annotated[
        str | None, typer.Option("--to-context", help="target context (default: this one)")
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Import a bundle: history kept, diverged objects reported and left unchanged."""
    import omfs

    target = to_context if to_context is not None else state.omega()
    report = omfs.import_(bundle, target, dry_run=dry_run)
    if state.as_json:
        emit_value(report)
    else:
        emit_table(
            [
                {"object": f"{r['bucket']}/{r['store']}/{r['name']}", "action": r["action"]}
                for r in report["objects"]
            ],
            ["object", "action"],
        )
    diverged = [r for r in report["objects"] if r["action"] == "diverged"]
    if diverged:
        fail(f"{len(diverged)} object(s) diverged and were left unchanged")

"""``om buckets ...``"""

from __future__ import annotations

import typer

from omfs.cli._common import emit_table, state

app = typer.Typer(help="Buckets: top-level folders of a context.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the buckets of the context."""
    emit_table([{"bucket": b} for b in state.omega().buckets], ["bucket"])

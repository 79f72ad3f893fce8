"""Help as people write it: ``NAME [X] [Y]`` and ``--result RESULT`` rather than Typer's
``{name} [[X]]`` and ``--result <str>``; applied to the whole command tree once it is built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperOption

if TYPE_CHECKING:
    from typer._click import Context as ClickContext

__all__ = ["ReadableArgument", "readable_help"]


class ReadableArgument(TyperArgument):
    """An argument shown by its metavar alone: ``NAME``, ``[X]`` when optional, ``NAME...``
    when repeated."""

    def get_usage_pieces(self, ctx: ClickContext) -> list[str]:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return [name + ("..." if self.nargs != 1 else "")]

    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return None  # the metavar says it: no "<str>" beside it


def readable_help(command: Any) -> None:
    """Give every argument and valued option of ``command`` and its subcommands a metavar in
    capitals (an explicit one is kept): arguments by their name, options by theirs, or
    ``KEY=VALUE`` where their help begins so."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = (param.metavar or param.name or "").strip("[]").upper()
            param.__class__ = ReadableArgument
        elif isinstance(param, TyperOption) and param.metavar is None and _takes_value(param):
            pair = (param.help or "").startswith("KEY=VALUE")
            param.metavar = "KEY=VALUE" if pair else (param.name or "value").upper()
    for sub in (getattr(command, "commands", None) or {}).values():
        readable_help(sub)


def _takes_value(option: TyperOption) -> bool:
    return not option.is_flag and not option.count

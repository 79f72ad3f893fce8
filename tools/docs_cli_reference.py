"""MkDocs hook: the command-line reference, generated at build time from the Typer app.

``docs/reference/cli.md`` holds the marker below; this hook replaces it with one section per
command of ``omfs.cli.app`` (help, usage, arguments, options), walking the command tree the
way ``om --help`` does, so the page never drifts from the CLI. Listed in ``mkdocs.yml``
under ``hooks:``.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = "<!-- om-cli-reference -->"
PAGE = "reference/cli.md"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|])")


def on_config(config: Any) -> Any:
    """Import omfs from this checkout's ``src``, whatever is installed."""
    src = str(Path(config.config_file_path).resolve().parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER}")
    return markdown.replace(MARKER, cli_reference())


def cli_reference() -> str:
    """Markdown for every command of ``om``, in the order ``om --help`` lists them."""
    import typer

    from omfs.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="om")
    return "\n".join(_section(command, ctx) for command, ctx in _walk(root, ctx))


def _walk(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """The command and every visible subcommand, depth first, each with its context."""
    yield command, ctx
    if not hasattr(command, "list_commands"):
        return
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        yield from _walk(sub, sub.context_class(sub, info_name=name, parent=ctx))


def _section(command: Any, ctx: Any) -> str:
    path = ctx.command_path
    level = "#" * min(2 + path.count(" "), 4)
    lines = [f"{level} `{path}`", "", _text(command.help or command.short_help or ""), ""]
    lines += ["```text", ctx.get_usage(), "```", ""]
    arguments = [p for p in command.get_params(ctx) if p.param_type_name == "argument"]
    options = [p for p in command.get_params(ctx) if p.param_type_name == "option"]
    if arguments:
        lines += ["**Arguments**", ""]
        for arg in arguments:
            need = "" if arg.required else " (optional)"
            help_ = _text(getattr(arg, "help", None) or "")
            lines.append(f"- `{arg.name.upper()}`{need}: {help_}".rstrip(": "))
        lines.append("")
    if options:
        lines += ["**Options**", ""]
        for opt in options:
            record = opt.get_help_record(ctx)
            if record is None:
                continue
            names, help_ = record
            lines.append(f"- `{names}`: {_text(help_)}".rstrip(": "))
        lines.append("")
    return "\n".join(lines)


def _text(text: str) -> str:
    """Help text as Markdown: click's ``\\b`` no-rewrap markers dropped, paragraphs kept,
    and characters Markdown or HTML would interpret shown as they are."""
    paragraphs = []
    for para in text.strip().split("\n\n"):
        para = "\n".join(line for line in para.splitlines() if line.strip() != "\b")
        para = html.escape(para, quote=False)
        paragraphs.append(_MARKDOWN_SPECIAL.sub(r"\\\1", para))
    return "\n\n".join(p for p in paragraphs if p)

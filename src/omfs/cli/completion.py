"""Shell completion of the names ``om`` takes: datasets, models, buckets and contexts.

``om --install-completion`` installs Typer's completion script; this module makes it
complete ``om datasets get <TAB>`` with the dataset names of the context the command line
names so far (``--root``, ``--context``, ``--bucket``, or the environment and config file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["completes_names", "names_for"]

#: which argument or option completes what: (group, parameter name) -> what it names
_COMPLETES = {
    ("datasets", "name"): "datasets",
    ("models", "name"): "models",
    ("contexts", "name"): "contexts",
    ("buckets", "bucket"): "buckets",
    ("buckets", "name"): "buckets",
    ("om", "context"): "contexts",
    ("om", "bucket"): "buckets",
}


def names_for(what: str) -> Callable[[Any, Any, str], list[str]]:
    """A completion function (Click's ``shell_complete``) listing ``what`` names that
    begin with what was typed; nothing when the context cannot be opened."""

    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        try:
            names = _names(ctx, what)
        except Exception:  # completion never fails loudly: it offers nothing
            return []
        return [n for n in names if n.startswith(incomplete)]

    return complete


def _names(ctx: Any, what: str) -> list[str]:
    from omfs import config

    if what == "contexts":
        return sorted(config.contexts())
    import omfs
    from omfs._util import parse_options

    root = ctx.find_root().params
    om = omfs.setup(
        root.get("root"),
        bucket=root.get("bucket") if what != "buckets" else None,
        context=root.get("context"),
        storage_options=parse_options(root.get("storage_option"), "--storage-option") or None,
    )
    return list(om.buckets) if what == "buckets" else list(getattr(om, what).list())


def completes_names(command: Any, group: str = "om") -> None:
    """Give the name arguments and options of ``command`` and its subcommands their
    completion (where Typer's ``autocompletion=`` would put it)."""
    for param in command.params:
        what = _COMPLETES.get((group, param.name))
        if what is not None:
            param._custom_shell_complete = names_for(what)
    for name, sub in (getattr(command, "commands", None) or {}).items():
        completes_names(sub, name if group == "om" else group)

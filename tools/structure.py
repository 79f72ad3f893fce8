"""Print the structure figures of ``src/omfs`` that the development section quotes.

- modules over 500 lines;
- functions (and methods) over 60 lines;
- uses of another module's private members: ``from m import _x`` of a non-module name, and
  ``obj._x`` where ``_x`` is not defined in the module that uses it;
- import cycles between omfs modules, counting imports inside functions (lazy ones) too.

Run: ``python tools/structure.py`` (``--json`` for machine-readable output, ``--check`` to
exit 1 when a figure is over its limit; ``nox -s lint`` runs it with ``--check``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "omfs"
MODULE_LIMIT = 500
FUNCTION_LIMIT = 60
#: What ``--check`` allows: how many of each the code may have.
ALLOWED = {
    "modules_over_500_lines": 0,
    "functions_over_60_lines": 5,
    "private_uses_across_modules": 5,
    "import_cycles": 0,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        found[_module_name(path)] = (path, ast.parse(path.read_text(), str(path)))
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``from … import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _defined_names(tree: ast.Module) -> set[str]:
    """Every name a module defines: functions, classes, assignments, attributes of self."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def figures() -> dict[str, object]:
    modules = _modules()
    long_modules = []
    long_functions = []
    private_uses = []
    graph: dict[str, set[str]] = defaultdict(set)
    for name, (path, tree) in modules.items():
        lines = len(path.read_text().splitlines())
        if lines > MODULE_LIMIT:
            long_modules.append({"module": name, "lines": lines})
        is_package = path.name == "__init__.py"
        defined = _defined_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT:
                    long_functions.append(
                        {"function": f"{name}.{node.name}", "line": node.lineno, "lines": length}
                    )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + ".") or alias.name == PACKAGE:
                        graph[name].add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node)
                if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        graph[name].add(sub)
                        continue
                    graph[name].add(target)
                    if _private(alias.name):
                        private_uses.append(
                            {"module": name, "line": node.lineno, "uses": f"{target}.{alias.name}"}
                        )
            elif (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and node.attr not in defined
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                private_uses.append({"module": name, "line": node.lineno, "uses": node.attr})
    for edges in graph.values():
        edges.intersection_update(modules)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    return {
        "modules": len(modules),
        "modules_over_500_lines": sorted(long_modules, key=lambda r: -r["lines"]),
        "functions_over_60_lines": sorted(long_functions, key=lambda r: -r["lines"]),
        "private_uses_across_modules": private_uses,
        "import_cycles": cycles,
    }


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(component)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a figure is over its limit (ALLOWED)"
    )
    args = parser.parse_args(argv)
    result = figures()
    over = [k for k, limit in ALLOWED.items() if len(result[k]) > limit]  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if args.check and over else 0
    print(f"modules: {result['modules']}")
    for key in (
        "modules_over_500_lines",
        "functions_over_60_lines",
        "private_uses_across_modules",
        "import_cycles",
    ):
        rows = result[key]
        print(f"{key.replace('_', ' ')}: {len(rows)}")
        for row in rows:
            print(f"  {row}")
    if args.check and over:
        print(f"over the limits: {', '.join(f'{k} (at most {ALLOWED[k]})' for k in over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

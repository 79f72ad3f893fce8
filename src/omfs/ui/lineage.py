"""A model's lineage as a picture: dataset versions → model versions → promoted copies.

Built from the logs: each version's ``trained_on`` (the dataset versions it was fit on) and
``promoted_from`` (where a copy came from), and, for the copies, the same model in the other
environments (the buckets of this context and the named contexts of the config file) whose
``promoted_from`` names a version here. The geometry is computed here; the template draws
it as SVG (every label escaped by Jinja).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omfs.errors import OmfsError

__all__ = ["Graph", "Node", "copies_elsewhere", "lineage_graph"]

#: model versions drawn (the newest)
MAX_VERSIONS = 12
_COL_X = (10, 250, 490)
_NODE_W, _NODE_H, _GAP = 200, 34, 12


@dataclass
class Node:
    """A box of the picture: its label, a second line, a link, and where it is."""

    key: str
    label: str
    detail: str = ""
    href: str | None = None
    column: int = 0
    x: int = 0
    y: int = 0
    css: str = ""


@dataclass
class Graph:
    """Boxes and the edges between them (pairs of node keys), with the picture's size."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[Node, Node]] = field(default_factory=list)
    width: int = _COL_X[-1] + _NODE_W + 10
    height: int = 0


def _add(nodes: dict[str, Node], node: Node) -> Node:
    return nodes.setdefault(node.key, node)


def lineage_graph(
    versions: list[Any], copies: list[dict[str, Any]], dataset_href: Any, model_href: Any
) -> Graph:
    """The picture of ``versions`` (Metadata, newest first) and their ``copies`` (rows of
    :func:`copies_elsewhere`). ``dataset_href(bucket, name)`` and ``model_href(version)``
    give the links."""
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    for meta in versions[:MAX_VERSIONS]:
        model = _add(
            nodes,
            Node(f"m{meta.version}", f"{meta.name} v{meta.version}", meta.created[:16],
                 model_href(meta.version), 1, css="model"),
        )  # fmt: skip
        lineage = meta.lineage or {}
        for entry in lineage.get("trained_on") or []:
            if not isinstance(entry, dict):
                continue
            bucket, name = entry.get("bucket") or meta.bucket, str(entry.get("dataset"))
            key = f"d:{bucket}/{name}@{entry.get('version')}"
            data = Node(key, f"{name} v{entry.get('version')}", f"dataset · {bucket}",
                        dataset_href(bucket, name), 0, css="dataset")  # fmt: skip
            edges.append((_add(nodes, data).key, model.key))
        origin = lineage.get("promoted_from")
        if isinstance(origin, dict):
            key = f"o:{origin.get('context')}/{origin.get('bucket')}@{origin.get('version')}"
            src = Node(key, f"{origin.get('name')} v{origin.get('version')}",
                       f"from {origin.get('bucket')} · {origin.get('context')}", None, 0,
                       css="origin")  # fmt: skip
            edges.append((_add(nodes, src).key, model.key))
    for copy in copies:
        if f"m{copy['from_version']}" not in nodes:
            continue
        key = f"c:{copy['where']}@{copy['version']}"
        node = Node(key, f"{copy['name']} v{copy['version']}", copy["where"], None, 2,
                    css="copy")  # fmt: skip
        edges.append((f"m{copy['from_version']}", _add(nodes, node).key))
    return _layout(nodes, edges)


def _layout(nodes: dict[str, Node], edges: list[tuple[str, str]]) -> Graph:
    """Stack each column's boxes top to bottom; the picture as tall as the tallest column."""
    rows = [0, 0, 0]
    for node in nodes.values():
        node.x = _COL_X[node.column]
        node.y = 10 + rows[node.column] * (_NODE_H + _GAP)
        rows[node.column] += 1
    graph = Graph(list(nodes.values()))
    graph.edges = [(nodes[a], nodes[b]) for a, b in dict.fromkeys(edges)]
    graph.height = 20 + max(rows) * (_NODE_H + _GAP)
    return graph


def copies_elsewhere(
    name: str, here: tuple[str, str], places: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """The versions of model ``name`` in other ``places`` (``(label, ModelStore)``) that were
    promoted from ``here`` (``(root, bucket)``): ``where``, ``name``, ``version``,
    ``from_version``. A place that cannot be read is skipped."""
    found = []
    for where, store in places:
        try:
            state = store.state(name, full=True)
        except (OmfsError, OSError):
            continue
        if not state.exists:
            continue
        for rec in state.live():
            origin = (rec.lineage or {}).get("promoted_from") or {}
            if (origin.get("context"), origin.get("bucket")) == here and origin.get("name") == name:
                found.append(
                    {
                        "where": where,
                        "name": name,
                        "version": rec.version,
                        "from_version": origin.get("version"),
                    }
                )
    return found

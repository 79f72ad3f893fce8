"""The OpenAPI description of the server (``/openapi.json``) and a page listing its
endpoints (``/docs``, made on the server: no script, no CDN)."""

from __future__ import annotations

from typing import Any

__all__ = ["docs_page", "schema"]


def docs_page(doc: dict[str, Any]) -> str:
    """``/docs``: the endpoints of OpenAPI document ``doc`` as a plain HTML page, made here
    (no script, no third-party CDN: it works offline)."""
    from html import escape

    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(
                f"<tr><td><code>{escape(method.upper())}</code></td>"
                f"<td><code>{escape(path)}</code></td><td>{escape(op['summary'])}</td>"
                f"<td>{escape(params)}</td></tr>"
            )
    title = escape(doc["info"]["title"])
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}: API</title>'
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;"
        "text-align:left;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>{title}</h1><p>Requests carry <code>Authorization: Bearer TOKEN</code> when "
        'the server has tokens. The full description: <a href="/openapi.json">'
        "/openapi.json</a>; errors are <code>{&quot;error&quot;: &quot;...&quot;}</code>."
        "</p><table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )


_ERROR = {
    "description": "a user error, named",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_ROWS = {
    "type": "object",
    "description": "omega|ml's form, or MLflow's dataframe_split, dataframe_records, "
    "instances or inputs",
    "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "data": {"type": "array", "items": {"type": "array", "items": {}}},
        "dataframe_split": {"type": "object"},
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array"},
        "inputs": {},
    },
}
_ANSWER = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "predictions": {"type": "array", "items": {}},
    },
}


def _op(summary: str, *, body: Any = None, answer: Any = None, params: Any = ()) -> Any:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
    for code in ("400", "401", "403", "404", "413", "422"):
        op["responses"][code] = _ERROR
    if answer is not None:
        op["responses"]["200"]["content"] = {"application/json": {"schema": answer}}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}, "text/csv": {"schema": {}}},
        }
    op["parameters"] = [
        {"name": p, "in": "path" if p in ("name", "action") else "query", "schema": {}}
        for p in params
    ]
    for p in op["parameters"]:
        p["required"] = p["in"] == "path"
    return op


def schema(single: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes (MLflow's when one model ``single`` is served)."""
    paths: dict[str, Any] = {
        "/health": {"get": _op("liveness")},
        "/v1/models": {"get": _op("models served: versions, tags, selectors in use")},
        "/v1/models/{name}/{action}": {
            "post": _op(
                "call predict, predict_proba, transform or decision_function of name, "
                "name@tag or name@vN",
                body=_ROWS,
                answer=_ANSWER,
                params=("name", "action"),
            )
        },
        "/v1/datasets/{name}": {
            "get": _op("read a dataset, streamed", params=("name", "columns", "where", "format")),
            "post": _op(
                "put or append rows (a write token)", body=_ROWS, params=("name", "append")
            ),
        },
        "/metrics": {"get": _op("Prometheus metrics")},
        "/v2/models/{name}/infer": {
            "post": _op("Open Inference Protocol v2", body={"type": "object"}, params=("name",))
        },
    }
    if single is not None:
        paths["/ping"] = {"get": _op("MLflow health check")}
        paths["/invocations"] = {"post": _op(f"MLflow scoring of {single}", body=_ROWS)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "omfs serve", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }

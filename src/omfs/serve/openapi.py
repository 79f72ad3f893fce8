"""The OpenAPI description of the server (``/openapi.json``) and its page (``/docs``)."""

from __future__ import annotations

from typing import Any

__all__ = ["DOCS_PAGE", "schema"]

DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>omfs serve: API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><p>The API description: <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""

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

"""The ASGI app of ``om serve``: its routes, error answers and lifespan."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from omfs.access import WRITE, Tokens, check_bind, host_allowed
from omfs.errors import UsageError
from omfs.serve import openapi, protocols
from omfs.serve.audit import AUDIT_DATASET, Audit
from omfs.serve.bodies import DEFAULT_MAX_COLUMNS, Problem, frame_of
from omfs.serve.datasets import FORMATS, dataset_chunks, read_options, read_upload
from omfs.serve.models import Registry, parse_routes, parse_shadows, selector_text
from omfs.serve.server import Server, error_status

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_MAX_BODY",
    "app",
    "from_environment",
    "json_response",
    "route_error",
]

#: the largest request body a server takes, by default (16 MB)
DEFAULT_MAX_BODY = 16 * 2**20

#: the environment variable that hands ``om serve --workers N``'s settings to each worker
CONFIG_ENV = "OMFS_SERVE_CONFIG"

Handler = Callable[[Request], Awaitable[Response]]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``doc`` as a JSON response (msgspec: fast, numpy-free)."""
    return Response(
        msgspec.json.encode(doc), status, headers=headers, media_type="application/json"
    )


def guarded(handler: Handler) -> Handler:
    """``handler`` with every error answered as ``{"error": "..."}`` and its status."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            status, message = error_status(exc)
            rid = getattr(exc, "request_id", None)  # an audited answer names its row
            return json_response({"error": message}, status, {"X-Request-Id": rid} if rid else None)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def route_error(request: Request, exc: HTTPException, registry: Registry) -> Response:
    """Starlette's own 404 and 405 (no such endpoint, wrong method) as ``{"error": ...}``;
    MLflow's endpoints on a server of several models say how to get them."""
    path, method = request.url.path, request.method
    if path in ("/invocations", "/ping") and registry.single() is None:
        served = registry.served
        serving = "every model of its context" if served is None else f"{len(served)} models"
        message = (
            f"MLflow's {path} answers when the server serves one model (om serve --model "
            f"NAME@TAG); this one serves {serving}: call POST /v1/models/{{name}}/predict"
        )
    elif exc.status_code == 404:
        message = f"no endpoint {method} {path[:200]}; GET /docs lists the endpoints"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "another method")
        message = f"{path[:200]} does not take {method}; use {allowed}"
    else:
        message = str(exc.detail)
    return json_response({"error": message}, exc.status_code, headers=dict(exc.headers or {}))


class _Handlers:
    """The endpoints of one server."""

    def __init__(self, server: Server):
        self.server = server

    async def health(self, request: Request) -> Response:
        """Liveness: the server answers."""
        return json_response({"status": "ok", "loaded": len(self.server.registry.bindings)})

    async def list_models(self, request: Request) -> Response:
        """The models served: versions, tags, and which version each served selector uses."""
        self.server.allow(request)
        return json_response(await run_in_threadpool(_model_list, self.server))

    async def call_model(self, request: Request) -> Response:
        """``POST /v1/models/{name}/{action}``."""
        spec, action = request.path_params["name"], request.path_params["action"]
        answer = await self.server.answer(request, spec, action, frame_of)
        doc = {
            "model": answer.loaded.name,
            "version": answer.loaded.version,
            "predictions": answer.predictions,
        }
        task = BackgroundTask(self.server.run_shadow, *answer.shadow) if answer.shadow else None
        return Response(
            msgspec.json.encode(doc),
            headers=answer.headers,
            media_type="application/json",
            background=task,
        )

    async def get_dataset(self, request: Request) -> Response:
        """``GET /v1/datasets/{name}?columns=&where=&format=``, streamed."""
        self.server.allow(request)
        fmt, columns, filters = read_options(request.query_params)
        name = request.path_params["name"]
        chunks = await run_in_threadpool(
            dataset_chunks, self.server.om.datasets, name, fmt, columns, filters
        )
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=FORMATS[fmt])

    async def put_dataset(self, request: Request) -> Response:
        """``POST /v1/datasets/{name}[?append=true]`` with a write token."""
        self.server.allow(request, WRITE)
        append = request.query_params.get("append", "false").lower() in ("1", "true", "yes")
        name = request.path_params["name"]
        if name.partition("@")[0] in self.server.protected:
            raise Problem(403, f"dataset {name!r} is the server's audit: only the server writes it")
        body = await self.server.body(request)
        ctype = request.headers.get("content-type", "")
        frame = await self.server.parse(read_upload, body, ctype, self.server.max_columns)
        meta = await run_in_threadpool(_put, self.server.om.datasets, frame, name, append)
        return json_response({"name": meta.name, "version": meta.version, "rows": len(frame)})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text format."""
        self.server.allow(request)
        return PlainTextResponse(
            self.server.metrics.render(self.server.registry.reload_failures),
            media_type="text/plain; version=0.0.4",
        )

    async def schema(self, request: Request) -> Response:
        return json_response(openapi.schema(single=self.server.registry.single()))

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(openapi.docs_page(openapi.schema(single=self.server.registry.single())))


def _routes(server: Server) -> list[Route]:
    """Every endpoint, the model calls first: Starlette tries routes in order, so a
    prediction is matched by the first (MLflow's ``/invocations``) or so."""
    h = _Handlers(server)
    mlflow, oip = protocols.routes(server, guarded, json_response)
    return [
        *mlflow,
        Route("/v1/models/{name:path}/{action}", guarded(h.call_model), methods=["POST"]),
        *oip,
        Route("/health", guarded(h.health)),
        Route("/v1/models", guarded(h.list_models)),
        Route("/v1/datasets/{name:path}", guarded(h.get_dataset), methods=["GET"]),
        Route("/v1/datasets/{name:path}", guarded(h.put_dataset), methods=["POST"]),
        Route("/metrics", guarded(h.metrics)),
        Route("/openapi.json", h.schema),
        Route("/docs", h.docs),
    ]


def _put(datasets: Any, frame: Any, name: str, append: bool) -> Any:
    """Put or append an upload; 400 for a number no column type holds."""
    try:
        return datasets.put(frame, name, append=append)
    except OverflowError as exc:
        raise Problem(400, f"a number in the body is too large to store: {exc}") from None


class HostCheck:
    """ASGI middleware: 403 for a ``Host`` header the server does not answer to (a loopback
    server answers loopback names only: no DNS rebinding); see :func:`~omfs.access.host_allowed`."""

    def __init__(self, app: Any, bind: str, tokens: Tokens):
        self.app, self.bind, self.tokens = app, bind, tokens
        self.seen: dict[bytes, bool] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((v for k, v in scope["headers"] if k == b"host"), b"")
            allowed = self.seen.get(host)
            if allowed is None:
                allowed = host_allowed(host.decode("latin-1"), self.bind, self.tokens)
                if len(self.seen) < 64:
                    self.seen[host] = allowed
            if not allowed:
                message = "this server answers requests to its loopback address only"
                await json_response({"error": message}, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _model_list(server: Server) -> dict[str, Any]:
    store = server.registry.store
    models = []
    for name in server.registry.names():
        versions = [m.version for m in store.versions(name)]
        serving = {
            selector_text(*key): loaded.version
            for key, loaded in list(server.registry.bindings.items())
            if key[0] == name
        }
        models.append(
            {"name": name, "versions": versions, "tags": store.tags(name), "serving": serving}
        )
    return {"models": models}


def app(
    om: Any,
    models: list[str] | None = None,
    route: list[str] | None = None,
    shadow: list[str] | None = None,
    token: str | None = None,
    audit: bool | str = True,
    *,
    token_file: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    max_body: int = DEFAULT_MAX_BODY,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    poll: float = 0.2,
    audit_interval: float = 5.0,
) -> Starlette:
    """The ASGI app serving the models and datasets of ``om`` (a context's bucket).

    Args:
        om: the context (``omfs.setup(...)``); models and datasets of its bucket.
        models: serve only these (``["m@prod", "n"]``; a bare request for ``m`` then means
            ``m@prod``); None serves every model, latest version by default.
        route: canary weights, ``["m=prod:90,candidate:10"]``: requests for a bare ``m``.
        shadow: ``["m=challenger"]``: run the challenger too and audit its answer.
        token: a write token (besides ``token_file`` and ``$OMFS_SERVE_TOKEN``).
        audit: append an audit row per answer to ``serving/audit`` (or the dataset named).
        token_file: a private file of ``read TOKEN`` / ``write TOKEN`` lines.
        host: the address it will listen on: anything but loopback needs a token.
        max_body: the largest request body taken (413 above).
        max_columns: the most columns a request may carry (413 above).
        poll: how often (seconds) the models' logs are checked for moved tags.
        audit_interval: how often (seconds) the buffered audit rows are appended (and when
            the server stops): each append is a commit, so its cost is per append, not per row.

    The app is checked when it is made: every served model, route and shadow must resolve
    (NotFoundError otherwise); they are loaded then (without ``models``, every model's latest
    version, in the background as the server starts). A ``Host`` that is not a loopback name
    gets a 403 unless the app listens on another address with a token. Which OS users may
    connect is decided where it listens (:func:`omfs.access.owner_only_protocol`, as om serve).
    """
    tokens = Tokens.load(token_file)
    if token:
        tokens.scopes[token.encode()] = WRITE
    check_bind(host, tokens)
    routes = parse_routes(route)
    registry = Registry(om.models, models, routes, poll=poll)
    shadows = parse_shadows(shadow)
    for key in _startup_keys(registry, routes, shadows):
        registry.resolve(key)
    name = audit if isinstance(audit, str) else AUDIT_DATASET
    log = Audit(om.datasets, name, interval=audit_interval) if audit else None
    server = Server(om, registry, shadows, tokens, log, max_body, max_columns)
    server.protected = {AUDIT_DATASET, name}
    application = Starlette(
        routes=_routes(server),
        lifespan=_lifespan(registry, log),
        middleware=[Middleware(HostCheck, bind=host, tokens=tokens)],
        exception_handlers={HTTPException: _route_errors(registry)},
    )
    application.state.server = server
    return application


def _route_errors(registry: Registry) -> Any:
    """The app's handler of Starlette's HTTP errors: :func:`route_error`."""

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return route_error(request, exc, registry)

    return handler


def _lifespan(registry: Registry, log: Audit | None) -> Any:
    """Start the tag watcher, the preload (every model served) and the audit; stop them and
    flush the audit at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        registry.start()
        if registry.served is None:
            registry.preload()
        if log is not None:
            log.start()
        try:
            yield
        finally:
            registry.stop()
            if log is not None:
                await run_in_threadpool(log.close)

    return lifespan


def _startup_keys(
    registry: Registry, routes: dict[str, Any], shadows: dict[str, Any]
) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    if registry.served is not None:
        keys += list(registry.served.items())
    for name, choices in routes.items():
        keys += [(name, selector) for selector, _ in choices]
    keys += list(shadows.items())
    for name, _ in keys:
        if registry.served is not None and name not in registry.served:
            raise UsageError(
                f"Model {name!r} has a route or shadow but is not served: add --model {name}@TAG"
            )
    return keys


def from_environment() -> Starlette:
    """The app ``$OMFS_SERVE_CONFIG`` describes (JSON: ``setup`` with ``root``, ``bucket``,
    ``context``; ``app`` with the keyword arguments of :func:`app`): what each worker of
    ``om serve --workers N`` runs (uvicorn's ``factory=True``)."""
    import omfs

    settings = msgspec.json.decode(os.environ[CONFIG_ENV])
    om = omfs.setup(**settings["setup"])
    served = app(om, **settings["app"])
    gc.collect()  # what the worker loaded stays out of later collections (as om serve)
    gc.freeze()
    return served

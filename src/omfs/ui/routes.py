"""The pages of ``om ui``: every one reachable by links from ``/``.

Handlers are plain functions of a request; they run in Starlette's thread pool (storage
reads block), read what the page shows, and render a template.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from omfs.errors import UsageError
from omfs.objects.datasets.where import parse_where
from omfs.ui import activity, environments, lineage, objects, render
from omfs.ui.actions_routes import action_routes
from omfs.ui.base import UI

__all__ = ["routes"]


def _int(request: Request, key: str, default: int) -> int:
    value = request.query_params.get(key, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UsageError(f"?{key}= takes a number, got {value!r}") from None


def _pattern(q: str) -> str | None:
    """The glob of the search box: as typed with wildcards, else ``*text*``."""
    q = q.strip()
    if not q:
        return None
    return q if any(c in q for c in "*?[") else f"*{q}*"


def _listing(ui: UI, request: Request, kind: str) -> tuple[Any, Any, str]:
    """The store of ``kind`` on the request's bucket, one page of its names, the query."""
    om = ui.omega(request)
    store = getattr(om, kind)
    q = request.query_params.get("q", "")
    names = store.list(_pattern(q))
    return store, objects.paginate(names, _int(request, "page", 1), ui.page_size), q


def home(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    return ui.render(request, "home.html", buckets=om.buckets, root=om.root)


def models(ui: UI, request: Request) -> Response:
    store, page, q = _listing(ui, request, "models")
    rows = objects.model_rows(store, page.names)
    return ui.render(request, "models.html", rows=rows, page=page, q=q)


def model(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    name = request.path_params["name"]
    detail = objects.model_detail(om.models, name)
    places = [
        (f"{om.root} · {b}", om[b].models) for b in om.buckets if b != om.bucket
    ] + _named_places(ui, name)
    copies = lineage.copies_elsewhere(name, (om.root, om.bucket), places)

    def dataset_href(bucket: str, dataset: str) -> str:
        return f"/datasets/{dataset}?bucket={bucket}"

    def model_href(version: int) -> str:
        return f"/models/{name}?bucket={om.bucket}#v{version}"

    graph = lineage.lineage_graph(detail["versions"], copies, dataset_href, model_href)
    envs = environments.environment_names()
    return ui.render(request, "model.html", d=detail, graph=graph, copies=copies, envs=envs)


def _named_places(ui: UI, name: str) -> list[tuple[str, Any]]:
    """The model stores of the named contexts' default buckets (for promoted copies)."""
    places = []
    for env in environments.environment_names()[1:]:
        try:
            ctx = environments.open_environment(ui.om, env)
        except Exception:  # an unreachable context draws no copies; its page says why
            continue
        if ctx.root != ui.om.root:
            places.append((f"{env} · {ctx.bucket}", ctx.models))
    return places


def datasets(ui: UI, request: Request) -> Response:
    store, page, q = _listing(ui, request, "datasets")
    rows = objects.dataset_rows(store, page.names)
    return ui.render(request, "datasets.html", rows=rows, page=page, q=q)


def dataset(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    name = request.path_params["name"]
    detail = objects.dataset_detail(om.datasets, name)
    where = [w for w in request.query_params.getlist("where") if w.strip()]
    columns: list[str] = []
    rows: list[list[Any]] = []
    problem = None
    if detail["columns"]:
        try:
            columns, rows = objects.preview(om.datasets, name, parse_where(where))
        except (UsageError, ValueError, KeyError) as exc:
            problem = " ".join(str(exc).split())
    return ui.render(
        request, "dataset.html", d=detail, columns=columns, rows=rows, where=where,
        problem=problem,
    )  # fmt: skip


def envs(ui: UI, request: Request) -> Response:
    found = environments.environments(ui.om)
    names = [e["name"] for e in found]
    return ui.render(request, "environments.html", envs=found, names=names)


def compare(ui: UI, request: Request) -> Response:
    a_name = request.query_params.get("a", environments.CURRENT)
    b_name = request.query_params.get("b", "")
    bucket = request.query_params.get("in") or None
    if not b_name or a_name == b_name:
        raise UsageError("Choose two different environments to compare")
    a = environments.open_environment(ui.om, a_name)
    b = environments.open_environment(ui.om, b_name)
    rows = environments.compare(a, b, bucket)
    return ui.render(
        request, "compare.html", rows=rows, a=a_name, b=b_name, a_root=a.root, b_root=b.root,
        in_bucket=bucket, names=environments.environment_names(),
    )  # fmt: skip


def jobs(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    store, page, q = _listing(ui, request, "jobs")
    rows = activity.job_runs(store, page.names)
    return ui.render(
        request, "jobs.html", rows=rows, page=page, q=q, schedules=activity.schedules(om)
    )


def job(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    name = request.path_params["name"]
    meta = om.jobs.metadata(name)
    runs = activity.latest_runs(om.jobs, name, 50)
    run_id = request.query_params.get("run")
    shown = om.jobs.run(run_id, job=name) if run_id else None
    output = om.jobs.run_store.output(shown) if shown else None
    return ui.render(request, "job.html", meta=meta, runs=runs, shown=shown, output=output)


def runtime(ui: UI, request: Request) -> Response:
    connect = request.query_params.get("connect") == "1"
    description, workers = activity.workers(ui.om, connect)
    return ui.render(request, "runtime.html", cluster=description, workers=workers)


def serving(ui: UI, request: Request) -> Response:
    om = ui.omega(request)
    hours = _int(request, "hours", 24)
    if not 1 <= hours <= activity.MAX_HOURS:
        raise UsageError(f"?hours= takes 1 to {activity.MAX_HOURS} (a year), got {hours}")
    data = activity.serving_series(om.datasets, hours)
    chart = render.plot(data) if data and data["series"] else None
    return ui.render(
        request, "serving.html", data=data, chart=chart, hours=hours,
        audit=activity.AUDIT_DATASET,
    )  # fmt: skip


def _page(ui: UI, handler: Any) -> Any:
    """A Starlette endpoint of ``handler(ui, request)``, run in the thread pool."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        return await run_in_threadpool(handler, ui, request)

    return endpoint


def routes(ui: UI) -> list[Route]:
    """Every page and action of the UI."""
    pages = [
        ("/", home),
        ("/environments", envs),
        ("/environments/compare", compare),
        ("/models", models),
        ("/models/{name:path}", model),
        ("/datasets", datasets),
        ("/datasets/{name:path}", dataset),
        ("/jobs", jobs),
        ("/jobs/{name:path}", job),
        ("/runtime", runtime),
        ("/serving", serving),
    ]
    out = [Route(path, _page(ui, handler), methods=["GET"]) for path, handler in pages]
    out.append(Route("/favicon.ico", lambda r: RedirectResponse("/static/favicon.svg")))
    return [*out, *action_routes(ui)]

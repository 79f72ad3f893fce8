"""The routes of the actions: a GET preview and a POST (CSRF-checked) confirmation each,
for requests with write access only."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from omfs.errors import UsageError
from omfs.ui import actions, environments
from omfs.ui.base import UI

__all__ = ["action_routes"]


def _version(value: Any) -> int:
    try:
        return int(str(value).lstrip("v"))
    except ValueError:
        raise UsageError(f"A version is a number such as 3 or v3, got {value!r}") from None


def _args(request: Request, form: dict[str, str] | None) -> dict[str, str]:
    """The action's arguments: the query's for a preview, the form's for a confirmation."""
    return form if form is not None else dict(request.query_params)


def _target(ui: UI, request: Request, args: dict[str, str]) -> tuple[Any, str]:
    """The store a promotion goes to (environment ``env``, bucket ``to_bucket``), and its
    label for the page."""
    store = actions.check_store(request.path_params["store"])
    env = args.get("env") or environments.CURRENT
    ctx = environments.open_environment(ui.om, env)
    bucket = (args.get("to_bucket") or "").strip() or ctx.bucket
    return getattr(ctx[bucket], store), f"{env} · {bucket}"


def _done(request: Request, store: str, name: str, note: str) -> Response:
    """Back to the object's page after an action (303: the browser GETs it)."""
    bucket = request.query_params.get("bucket")
    query = f"?bucket={quote(bucket)}&done={quote(note)}" if bucket else f"?done={quote(note)}"
    return RedirectResponse(f"/{store}/{quote(name)}{query}", 303)


def tag(ui: UI, request: Request, form: dict[str, str] | None) -> Response:
    store_name = actions.check_store(request.path_params["store"])
    store = getattr(ui.omega(request), store_name)
    args = _args(request, form)
    name, tag_name, version = args.get("name", ""), args.get("tag", ""), args.get("version")
    preview = actions.move_preview(store, name, tag_name, _version(version))
    if form is None:
        return ui.render(
            request, "confirm_tag.html", store=store_name, name=name, p=preview, action="tag"
        )
    _check_unmoved(form, preview, "moving it")
    store.tag(f"{name}@v{preview['to']}", preview["tag"], reason=form.get("reason") or None)
    return _done(request, store_name, name, f"{preview['tag']} → v{preview['to']}")


def rollback(ui: UI, request: Request, form: dict[str, str] | None) -> Response:
    store_name = actions.check_store(request.path_params["store"])
    store = getattr(ui.omega(request), store_name)
    args = _args(request, form)
    name, tag_name = args.get("name", ""), args.get("tag", "")
    preview = actions.rollback_preview(store, name, tag_name)
    if form is None:
        return ui.render(
            request, "confirm_tag.html", store=store_name, name=name, p=preview,
            action="rollback",
        )  # fmt: skip
    _check_unmoved(form, preview, "rolling it back")
    store.rollback(name, tag_name, reason=form.get("reason") or None)
    return _done(request, store_name, name, f"{tag_name} rolled back to v{preview['to']}")


def _check_unmoved(form: dict[str, str], preview: dict[str, Any], doing: str) -> None:
    """Refuse a confirmation whose tag moved since its preview (someone else moved it):
    the preview's ``expect`` is where the tag pointed (empty: nowhere)."""
    if "expect" not in form:
        return
    then = _version(form["expect"]) if form["expect"] else None
    if then != preview["now"]:
        now = f"v{preview['now']}" if preview["now"] is not None else "nowhere"
        raise UsageError(
            f"{preview['tag']} points at {now} since the preview (it pointed at "
            f"{f'v{then}' if then is not None else 'nowhere'}); look again before {doing}"
        )


def promote(ui: UI, request: Request, form: dict[str, str] | None) -> Response:
    store_name = actions.check_store(request.path_params["store"])
    source = getattr(ui.omega(request), store_name)
    args = _args(request, form)
    name, version = args.get("name", ""), _version(args.get("version"))
    target, label = _target(ui, request, args)
    if form is None:
        preview = actions.promote_preview(source, name, version, target)
        return ui.render(
            request, "confirm_promote.html", store=store_name, name=name, p=preview,
            target=label, args=args, envs=environments.environment_names(),
        )  # fmt: skip
    meta, _ = actions.promote(
        source, name, version, target, form.get("tag", ""), form.get("reason", "")
    )
    note = f"v{version} promoted to {label} as v{meta.version}"
    if getattr(meta, "unchanged", False):
        note = f"{label} already holds v{version} as v{meta.version}; nothing was copied"
    return _done(request, store_name, name, note)


def _endpoint(ui: UI, handler: Any) -> Any:
    """GET: the preview; POST: the CSRF-checked confirmation; both need write access."""

    async def endpoint(request: Request) -> Response:
        ui.require_write(request)
        form = await ui.form(request) if request.method == "POST" else None
        return await run_in_threadpool(handler, ui, request, form)

    return endpoint


def action_routes(ui: UI) -> list[Route]:
    """``/act/{store}/tag``, ``/act/{store}/rollback``, ``/act/{store}/promote``."""
    return [
        Route(f"/act/{{store}}/{name}", _endpoint(ui, handler), methods=["GET", "POST"])
        for name, handler in (("tag", tag), ("rollback", rollback), ("promote", promote))
    ]

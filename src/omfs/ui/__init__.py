"""``om ui``: a local web page of a context's environments, datasets, models, jobs and runs.

Server-rendered with Jinja2 (autoescaped) on Starlette and uvicorn, with a vendored htmx;
part of the ``serve`` extra (``pip install 'omfs[serve]'``). :func:`create_app` builds the
ASGI application; ``om ui`` serves it on 127.0.0.1 and opens a browser.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(om: Any, **kwargs: Any) -> Any:
    """The ``om ui`` ASGI application for context ``om``; see :func:`omfs.ui.app.create_app`."""
    from omfs.ui.app import create_app as make

    return make(om, **kwargs)

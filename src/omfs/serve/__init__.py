"""Serving: models and datasets of a context over HTTP, by tag, with hot reload, canary
and shadow routes, and an audit of every answer (``om serve``; the ``serve`` extra).

``omfs.serve.app(om, ...)`` returns the ASGI app (Starlette) for uvicorn or any ASGI
server (:mod:`omfs.serve.asgi`); :mod:`omfs.access` holds the token and loopback
rules it shares with ``om ui``. The app is imported when first asked for, so the
audit's child process (:mod:`omfs.serve.audit_writer`) does not load the web stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    """``app``, imported on first use."""
    if name == "app":
        from omfs.serve.asgi import app

        return app
    raise AttributeError(f"module 'omfs.serve' has no attribute {name!r}")

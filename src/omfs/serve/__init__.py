"""Serving: models and datasets of a context over HTTP, by tag, with hot reload, canary
and shadow routes, and an audit of every answer (``om serve``; the ``serve`` extra).

``omfs.serve.app(om, ...)`` returns the ASGI app (Starlette) for uvicorn or any ASGI
server (:mod:`omfs.serve.asgi`); :mod:`omfs.access` holds the token and loopback
rules it shares with ``om ui``.
"""

from __future__ import annotations

from omfs.serve.asgi import app

__all__ = ["app"]

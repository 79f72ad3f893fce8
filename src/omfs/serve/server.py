"""What one request to a model does: access, body, binding, the call, metrics and audit.

Every user error becomes :class:`~omfs.serve.bodies.Problem` or an ``omfs.errors``
exception, which :func:`error_status` maps to a status and one line; nothing else leaves
a request but a one-line 500 that is logged with its traceback.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from omfs.access import READ, AccessDenied, Tokens
from omfs.errors import (
    IntegrityError,
    InvalidFilterError,
    NotFoundError,
    OmfsError,
    UnknownColumnError,
)
from omfs.serve.audit import Audit
from omfs.serve.bodies import Frame, Problem, model_input, to_list
from omfs.serve.metrics import Metrics
from omfs.serve.models import Loaded, Registry, selector_text

__all__ = [
    "ACTIONS",
    "INLINE_BYTES",
    "UNKNOWN",
    "Answer",
    "Server",
    "error_status",
    "public_message",
    "shortened",
]

T = TypeVar("T")

log = logging.getLogger("omfs.serve")

#: the methods a request may call
ACTIONS = ("predict", "predict_proba", "transform", "decision_function")
#: above this many rows a call runs in a thread, so the event loop keeps answering
_INLINE_ROWS = 256
#: above this many bytes a body is parsed in a thread (a small one is parsed faster inline)
INLINE_BYTES = 64 * 1024
#: the label of metrics and audit rows of requests for a model this server does not know
UNKNOWN = "(unknown)"


@dataclass
class Answer:
    """A model's answer to one request."""

    loaded: Loaded
    predictions: list[Any]
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)
    #: the arguments of :meth:`Server.run_shadow`, to run after the answer is sent
    shadow: tuple[Any, ...] | None = None


def error_status(exc: BaseException, logged: bool = True) -> tuple[int, str]:
    """The HTTP status and one-line message of an error raised while answering (naming
    bucket and object, never the context's root); a 500 is logged (unless ``logged`` is
    False: the caller re-raises it, to be logged once)."""
    if isinstance(exc, Problem):
        return exc.status, exc.message
    if isinstance(exc, AccessDenied):
        return exc.status, str(exc)
    if isinstance(exc, IntegrityError):
        if logged:
            log.error("integrity check failed: %s", exc)
        return 500, public_message(exc)
    if isinstance(exc, NotFoundError):
        return 404, _LIST_ADVICE.sub(_list_endpoint, public_message(exc))
    if isinstance(exc, UnknownColumnError):
        return 422, public_message(exc.args[0] if exc.args else exc)
    if isinstance(exc, InvalidFilterError):  # as the query string wrote it: where=...
        return 400, public_message(exc.cli_message().replace("--where ", "where="))
    if isinstance(exc, OmfsError):
        return 400, public_message(exc)
    if logged:
        log.error("internal error", exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); the server log has the details"


#: the Python API's advice of a not-found error ("list() shows the models there.")
_LIST_ADVICE = re.compile(r"\. list\(\) shows the (\w+) there\.$")


def _list_endpoint(match: re.Match[str]) -> str:
    """The not-found advice in HTTP terms: ``GET /v1/models`` lists the models."""
    return "; GET /v1/models lists them." if match[1] == "models" else "."


def shortened(text: str, limit: int = 300) -> str:
    """``text`` in one line of at most about ``limit`` characters: its first sentences,
    else cut at a word, with an ellipsis when something was left out."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    end = head.rfind(". ")
    if end >= limit // 3:
        return head[: end + 1] + " …"
    return head[: head.rfind(" ")].rstrip(",;:") + " …" if " " in head else head[:limit] + "…"


_CONTEXT = re.compile(r" of context '[^']*'")
_ROOT = re.compile(r"[:;,]? the context root '[^']*'.*$")


def public_message(exc: BaseException | str) -> str:
    """``exc``'s message in one line, without where the context lives (its root, a path
    or URL of the server's storage): clients learn the bucket and the object's name."""
    text = " ".join(str(exc).split())
    return _ROOT.sub(".", _CONTEXT.sub("", text))


class Server:
    """The shared state of one served app: models, tokens, metrics, audit."""

    def __init__(
        self,
        om: Any,
        registry: Registry,
        shadows: dict[str, int | str | None],
        tokens: Tokens,
        audit: Audit | None,
        max_body: int,
        max_columns: int,
    ):
        self.om = om
        self.registry = registry
        self.shadows = shadows
        self.tokens = tokens
        self.audit = audit
        self.metrics = Metrics()
        self.max_body = max_body
        self.max_columns = max_columns
        #: datasets only the server writes (its audit): refused to uploads
        self.protected: set[str] = set()
        self._ids = itertools.count(1)
        self._prefix = os.urandom(8).hex()

    def request_id(self) -> str:
        """A new request id: this server's random prefix and a counter (unique, cheap)."""
        return f"{self._prefix}-{next(self._ids):x}"

    def allow(self, request: Request, needs: str = READ) -> str:
        """The request's scope; AccessDenied when it lacks ``needs``."""
        if not self.tokens.required and needs == READ:
            return READ
        return self.tokens.check(request.headers.get("authorization"), needs)

    async def body(self, request: Request) -> bytes:
        """The request body; 413 when it is larger than the server's limit."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            raise Problem(413, f"the body has {length} bytes; this server takes {self.max_body}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise Problem(413, f"the body is larger than {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def parse(self, parse: Callable[..., T], body: bytes, *args: Any) -> T:
        """``parse(body, *args)``: inline for a small body, in a thread for a large one, so
        a large body never stalls the event loop."""
        if len(body) <= INLINE_BYTES:
            return parse(body, *args)
        return await run_in_threadpool(parse, body, *args)

    async def binding(self, spec: str) -> Loaded:
        """The loaded version ``spec`` names now (resolved in a thread the first time)."""
        key = self.registry.key(spec)
        found = self.registry.bindings.get(key)
        if found is None:
            found = await run_in_threadpool(self.registry.resolve, key)
        return found

    async def answer(
        self, request: Request, spec: str, action: str, frame: Any, body: bytes | None = None
    ) -> Answer:
        """Run ``action`` of model ``spec`` on the rows ``frame(body, content_type)`` gives
        (``body``: when the caller read it already); every outcome of a request with access
        is counted and audited (one without access is refused before)."""
        start = time.perf_counter()
        self.allow(request)
        request_id = self.request_id()
        loaded: Loaded | None = None
        rows = 0
        try:
            if action not in ACTIONS:
                raise Problem(404, f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
            if body is None:
                body = await self.body(request)
            ctype = request.headers.get("content-type", "")
            rows_in: Frame = await self.parse(frame, body, ctype, self.max_columns)
            rows = len(rows_in.data)
            loaded = await self.binding(spec)
            X = model_input(rows_in, loaded.features, loaded.n_features)
            predictions = await self.call(loaded, action, X, rows)
        except Exception as exc:
            status, message = error_status(exc, logged=False)
            self.record(request_id, spec, loaded, action, status, start, rows, message)
            exc.request_id = request_id  # type: ignore[attr-defined]  # the answer's header
            raise
        shadow = self.record(request_id, spec, loaded, action, 200, start, rows, None, rows_in)
        return Answer(loaded, predictions, request_id, self.headers(loaded, request_id), shadow)

    async def call(self, loaded: Loaded, action: str, X: Any, rows: int) -> list[Any]:
        """``loaded.model.<action>(X)`` as lists; 422 when the model refuses the input."""
        method = getattr(loaded.model, action, None)
        if not callable(method):
            raise Problem(422, f"model {loaded.label} has no {action}() method")
        try:
            if rows > _INLINE_ROWS:
                result = await run_in_threadpool(method, X)
            else:
                result = method(X)
        except (ValueError, TypeError, KeyError) as exc:
            what = f"model {loaded.label} cannot {action} this input"
            raise Problem(422, f"{what}: {shortened(str(exc))}") from None
        return to_list(result, loaded.name, loaded.version, action)

    @staticmethod
    def headers(loaded: Loaded, request_id: str) -> dict[str, str]:
        """The answer's headers: which version answered, its payload's sha256, the id."""
        return {
            "X-Omfs-Model": loaded.label,
            "X-Omfs-Sha256": loaded.sha256,
            "X-Request-Id": request_id,
        }

    def record(
        self,
        request_id: str,
        spec: str,
        loaded: Loaded | None,
        action: str,
        status: int,
        start: float,
        rows: int,
        error: str | None,
        frame: Frame | None = None,
    ) -> tuple[Any, ...] | None:
        """Count the answer and queue its audit row; when a shadow runs, return its
        job instead (:meth:`run_shadow` queues the row with the challenger's answer)."""
        seconds = time.perf_counter() - start
        name = loaded.name if loaded else self.known_name(spec)
        version = str(loaded.version) if loaded else ""
        action = action if action in ACTIONS else UNKNOWN
        self.metrics.observe(name, version, action, status, seconds)
        if self.audit is None:
            return None
        row = (
            request_id,
            time.time(),
            name,
            loaded.version if loaded else None,
            loaded.sha256 if loaded else None,
            action,
            status,
            seconds * 1000.0,
            rows,
            error,
        )
        shadow = self.shadows.get(name) if loaded is not None else None
        if shadow is None or frame is None:
            self.audit.add((*row, None, None, None))
            return None
        return (row, name, shadow, action, frame)

    def known_name(self, spec: str) -> str:
        """The model name of ``spec`` when this server serves it, else :data:`UNKNOWN` (a
        caller's made-up names never become metrics series or audit values)."""
        name = spec.partition("@")[0]
        served = self.registry.served
        if served is not None:
            return name if name in served else UNKNOWN
        return name if any(key[0] == name for key in list(self.registry.bindings)) else UNKNOWN

    async def run_shadow(
        self, row: tuple[Any, ...], name: str, selector: Any, action: str, frame: Frame
    ) -> None:
        """Run the challenger on the same input after the answer was sent, and audit both
        (the challenger's answer is never returned)."""
        assert self.audit is not None
        shadow: tuple[int | None, str | None, str]
        try:
            loaded = await self.binding(selector_text(name, selector))
            X = model_input(frame, loaded.features, loaded.n_features)
            answer: Any = await self.call(loaded, action, X, len(frame.data))
            shadow = (loaded.version, loaded.sha256, msgspec.json.encode(answer).decode())
        except Exception as exc:
            status, message = error_status(exc)
            error = msgspec.json.encode({"status": status, "error": message}).decode()
            shadow = (None, None, error)
        self.audit.add((*row, *shadow))

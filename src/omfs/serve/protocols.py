"""Other servers' protocols, so their clients work unchanged.

- MLflow's scoring protocol, when one model is served: ``GET /ping`` and
  ``POST /invocations`` (JSON bodies ``dataframe_split``, ``dataframe_records``,
  ``instances``, ``inputs``, or ``text/csv``), answering ``{"predictions": [...]}``;
  errors as MLflow gives them, ``{"error_code": "BAD_REQUEST", "message": ...}``.
- The Open Inference Protocol v2 (KServe, Triton, Seldon): ``GET /v2/health/live``,
  ``/v2/health/ready``, ``GET /v2/models/{name}`` and ``POST /v2/models/{name}/infer``
  (``name`` may carry ``@tag``), one output named after the action (``predict`` unless
  the request asks for another, e.g. ``"outputs": [{"name": "predict_proba"}]``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omfs.serve.bodies import Frame, Problem, check_width, decode_json, frame_of
from omfs.serve.server import ACTIONS, Server, error_status

__all__ = ["infer_frame", "routes"]

_DATATYPES = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL"}


class _Handlers:
    """The endpoints of other protocols, on one server."""

    def __init__(self, server: Server, respond: Callable[..., Response]):
        self.server = server
        self.respond = respond
        #: the one model served (fixed for the server's life: ``--model`` is given once)
        self.single = server.registry.single() or ""

    async def ping(self, request: Request) -> Response:
        """MLflow's health check."""
        return Response("\n", media_type="application/json")

    async def invocations(self, request: Request) -> Response:
        """MLflow's ``/invocations``: the served model's ``predict``."""
        try:
            answer = await self.server.answer(request, self.single, "predict", frame_of)
        except Exception as exc:
            status, message = error_status(exc)
            code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
            return self.respond({"error_code": code, "message": message, "error": message}, status)
        task = BackgroundTask(self.server.run_shadow, *answer.shadow) if answer.shadow else None
        return Response(
            _encode({"predictions": answer.predictions}),
            headers=answer.headers,
            media_type="application/json",
            background=task,
        )

    async def live(self, request: Request) -> Response:
        return self.respond({"live": True})

    async def ready(self, request: Request) -> Response:
        return self.respond({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        """OIP model metadata: name, versions, platform."""
        self.server.allow(request)
        spec = request.path_params["name"]
        loaded = await self.server.binding(spec)
        versions = await run_in_threadpool(self.server.registry.store.versions, loaded.name)
        return self.respond(
            {
                "name": spec,
                "versions": [str(m.version) for m in versions],
                "platform": "omfs",
                "inputs": [],
                "outputs": [{"name": a} for a in ACTIONS if hasattr(loaded.model, a)],
            }
        )

    async def infer(self, request: Request) -> Response:
        """OIP ``infer``: inputs as tensors, one output."""
        spec = request.path_params["name"]
        if "version" in request.path_params:
            spec = f"{spec}@v{request.path_params['version']}"
        self.server.allow(request)
        body = await self.server.body(request)
        doc = await self.server.parse(decode_json, body)
        action = _requested_action(doc)
        answer = await self.server.answer(request, spec, action, _frame_of(doc), body)
        outputs = _output(action, answer.predictions)
        doc = {
            "model_name": answer.loaded.name,
            "model_version": str(answer.loaded.version),
            "id": answer.request_id,
            "outputs": [outputs],
        }
        task = BackgroundTask(self.server.run_shadow, *answer.shadow) if answer.shadow else None
        return Response(
            _encode(doc), headers=answer.headers, media_type="application/json", background=task
        )


def routes(
    server: Server, guarded: Callable[..., Any], respond: Callable[..., Any]
) -> tuple[list[Route], list[Route]]:
    """The MLflow routes (when one model is served; ``/invocations`` first, the hot path)
    and the Open Inference Protocol v2 routes."""
    h = _Handlers(server, respond)
    mlflow = []
    if server.registry.single() is not None:
        mlflow = [
            Route("/invocations", h.invocations, methods=["POST"]),
            Route("/ping", h.ping, methods=["GET"]),
        ]
    oip = [
        Route(
            "/v2/models/{name:path}/versions/{version:int}/infer",
            guarded(h.infer),
            methods=["POST"],
        ),
        Route("/v2/models/{name:path}/infer", guarded(h.infer), methods=["POST"]),
        Route("/v2/models/{name:path}", guarded(h.model_metadata), methods=["GET"]),
        Route("/v2/health/live", h.live),
        Route("/v2/health/ready", h.ready),
    ]
    return mlflow, oip


def _encode(doc: Any) -> bytes:
    import msgspec

    return msgspec.json.encode(doc)


def _frame_of(doc: Any) -> Callable[..., Frame]:
    """The rows of OIP request ``doc``, as :meth:`Server.answer` asks for them."""

    def frame(body: bytes, content_type: str, max_columns: int) -> Frame:
        found = infer_frame(doc)
        check_width(len(found.data[0]), max_columns)
        return found

    return frame


def _requested_action(doc: Any) -> str:
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not outputs:
        return "predict"
    name = outputs[0].get("name") if isinstance(outputs[0], dict) else None
    if name not in ACTIONS:
        raise Problem(400, f"outputs: {name!r} is not one of {', '.join(ACTIONS)}")
    return str(name)


def infer_frame(doc: Any) -> Frame:
    """The rows of an OIP v2 request: one input of shape ``[rows, columns]``, or one
    input per column of shape ``[rows]`` (named after its column)."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise Problem(400, 'the body needs "inputs": [{"name", "shape", "datatype", "data"}]')
    tensors = [_tensor(i) for i in inputs]
    if len(tensors) == 1 and len(tensors[0][1]) == 2:
        return Frame(None, tensors[0][2])
    rows = {len(t[2]) for t in tensors}
    if len(rows) != 1 or any(len(t[1]) > 2 or (len(t[1]) == 2 and t[1][1] != 1) for t in tensors):
        raise Problem(422, "inputs: give one [rows, columns] tensor or one [rows] per column")
    columns = [[r[0] for r in t[2]] for t in tensors]
    return Frame([t[0] for t in tensors], [list(r) for r in zip(*columns, strict=True)])


def _tensor(spec: dict[str, Any]) -> tuple[str, list[int], list[list[Any]]]:
    name, shape, data = spec.get("name"), spec.get("shape"), spec.get("data")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise Problem(400, f"input {name!r}: shape must be a list of sizes")
    if not 1 <= len(shape) <= 2 or not isinstance(data, list):
        raise Problem(422, f"input {name!r}: give a 1- or 2-dimensional tensor with its data")
    try:
        flat = _flatten(data)
    except RecursionError:
        raise Problem(400, f"input {name!r}: the data is nested too deeply") from None
    width = shape[1] if len(shape) == 2 else 1
    if len(flat) != shape[0] * width or not shape[0]:
        raise Problem(422, f"input {name!r}: {len(flat)} values do not fill the shape {shape}")
    bounds = range(0, len(flat) + 1, width)
    return str(name), shape, [flat[a:b] for a, b in pairwise(bounds)]


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in data:
        if isinstance(value, list):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def _output(action: str, predictions: list[Any]) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(predictions)
    kind = _DATATYPES.get(array.dtype.kind, "BYTES")
    data = array.ravel().tolist() if kind != "BYTES" else [str(v) for v in array.ravel()]
    return {"name": action, "shape": list(array.shape), "datatype": kind, "data": data}

"""The online prediction endpoint's routes: a FastAPI app wiring a
:class:`~mlops_assets.serving.service.PredictionService` to HTTP.

Routes:

- ``POST /predict``: predictions for serving keys (shapes in :mod:`mlops_assets.serving.protocol`,
  whose request schema both validates the body and documents it in ``/openapi.json``);
- ``GET /healthz``: the process is up (always 200 while it answers);
- ``GET /readyz``: 200 when a champion and the online store are loaded, else 503 with the reasons;
- ``GET /model``: the loaded champion (version, candidate, loaded_at), the online store (path, row
  count, mtime, ...), the request log's counters and any load problem;
- ``GET /openapi.json`` (and ``/docs``).

/predict takes the raw body from the framework: a body whose Content-Type is not JSON is refused
(415) unread, and the body is read with a size cap and a read timeout before anything parses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import Settings
from mlops_assets.serving import protocol
from mlops_assets.serving.config import ServingConfig
from mlops_assets.serving.protocol import (
    BODY_TOO_LARGE,
    MALFORMED_JSON,
    REQUEST_TIMEOUT,
    UNSUPPORTED_MEDIA_TYPE,
    RequestError,
)
from mlops_assets.serving.service import PredictionService

logger = logging.getLogger(__name__)
JSON = "application/json"
REQUEST_ID_HEADER = "x-request-id"
PREDICT_PATH = "/predict"
_encode = msgspec.json.Encoder().encode


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type=JSON)


def _is_json(content_type: bytes) -> bool:
    """Whether a Content-Type names JSON: ``application/json`` or a ``+json`` type, any
    parameters (``; charset=utf-8``) allowed."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


async def _receive_body(scope: Scope, receive: Receive, limit: int, timeout: float) -> bytes:
    """The request body, refused before it is read with 415 when its Content-Type is not JSON
    (no Content-Type is taken as JSON) or, with a Content-Length, with 413 when it exceeds
    ``limit`` bytes; refused with 413 as soon as more than ``limit`` bytes arrived, and with 408
    when it has not fully arrived ``timeout`` seconds after this call. ClientDisconnect if the
    client left."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value
        elif name == b"content-type" and not _is_json(value):
            raise RequestError(
                UNSUPPORTED_MEDIA_TYPE,
                f"the body's Content-Type is {value.decode('latin-1')!r}; /predict takes a JSON "
                "object: send it with Content-Type: application/json",
            )
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(MALFORMED_JSON, f"bad Content-Length {declared!r}") from None
        if size > limit:
            raise RequestError(
                BODY_TOO_LARGE,
                f"the body has {size} bytes; the limit is {limit} (max_body_bytes)",
            )
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise RequestError(
                        BODY_TOO_LARGE,
                        f"the body exceeds {limit} bytes (max_body_bytes); stopped reading",
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        expected = f" of {int(declared)}" if declared is not None else ""
        raise RequestError(
            REQUEST_TIMEOUT,
            f"the body did not arrive within {timeout:g} s (read_timeout_seconds): "
            f"{received}{expected} bytes received; send the whole body at once",
        ) from None


class RawBodyRoute(APIRoute):
    """A FastAPI route whose endpoint takes the ``Request`` and returns a ``Response`` itself:
    FastAPI documents it from the route's own ``responses`` and ``openapi_extra`` (the request
    schema's JSON schema), and a request goes straight to the endpoint, with no dependency
    solving or body parsing by the framework (the request schema validates the body)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def _schema_ref(name: str) -> dict[str, Any]:
    return {"content": {JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _predict_docs(service: PredictionService) -> dict[str, Any]:
    """``responses`` and ``openapi_extra`` of the /predict route, from the request schema."""
    body_name = service.schema.body_type.__name__
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "One prediction per key, in order.", **_schema_ref("PredictResponse")}
    }
    for status, meaning in protocol.error_responses().items():
        responses[status] = {"description": meaning, **_schema_ref("ErrorResponse")}
    extra = {"requestBody": {"required": True, **_schema_ref(body_name)}}
    return {"responses": responses, "openapi_extra": extra}


def create_app(
    settings: Settings, spec: DatasetSpec, config: ServingConfig | None = None
) -> FastAPI:
    """The endpoint of one environment. Loading starts with the app's lifespan (startup)."""
    config = config or ServingConfig()
    service = PredictionService(settings, spec, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    overridable = ", ".join(service.schema.overridable)
    app = FastAPI(
        title="mlops_assets online prediction endpoint",
        version="1",
        description=(
            f"Predicts **{spec.target}** ({spec.outcome_noun}) for each {spec.event_noun} with "
            f"the `{config.alias}` model of `{settings.registered_model_name}`, on the latest "
            f"features of the online store.\n\nServing key columns: "
            f"{', '.join(spec.serving_keys)}. Overridable features: {overridable}."
        ),
        lifespan=lifespan,
    )
    app.state.service = service

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(service.schema.json_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return _json({"error": code, "detail": detail}, exc.status_code)

    limit, read_timeout = config.max_body_bytes, config.read_timeout_seconds

    async def predict(request: Request) -> Response:
        """Predictions for serving keys, with the features of the online store and the
        champion. After a 408 the connection is closed, as the client is too slow to keep."""
        started = time.perf_counter()
        try:
            body: bytes | RequestError = await _receive_body(
                request.scope, request.receive, limit, read_timeout
            )
        except RequestError as exc:
            body = exc
        except ClientDisconnect:
            # The client left before sending its body: nothing is answered, nothing is logged.
            return Response(status_code=499)
        status, content, request_id = service.answer(body, started)
        headers = {REQUEST_ID_HEADER: request_id}
        if status == 408:
            headers["connection"] = "close"
        return Response(content, status_code=status, media_type=JSON, headers=headers)

    app.router.add_api_route(
        PREDICT_PATH,
        predict,
        methods=["POST"],
        summary="Predict for serving keys with the champion",
        response_class=Response,
        route_class_override=RawBodyRoute,
        **_predict_docs(service),
    )

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return _json(service.health())

    @app.get(
        "/readyz",
        summary="200 when a champion and the online store are loaded, else 503 with the reason",
        responses={503: {"description": "not ready", **_schema_ref("ErrorResponse")}},
    )
    async def readyz() -> Response:
        status, payload = service.readiness()
        return _json(payload, status)

    @app.get("/model", summary="The loaded champion, the online store and the request log")
    async def model_info() -> Response:
        return _json(service.describe())

    return app

"""The HTTP API (FastAPI): ``GET /health``, ``GET /v1/models``, ``POST /v1/models/{name}/predict``, ``/docs``.

Every refusal is one line of JSON, ``{"error": ..., "field": ..., "status": ...}``, with a 4xx status; a bug
answers 500 ``internal error`` and its traceback goes to the server log only. The body is read in chunks and
refused past ``max_body_bytes`` whatever Content-Length says. With an API key, ``/v1/*`` needs
``Authorization: Bearer <key>`` (compared in constant time); ``/health`` and the OpenAPI page stay open. No CORS
middleware is installed, so browsers on other origins cannot read the answers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from graftkit import __version__
from graftkit.errors import GraftkitError
from graftkit.serving.batching import Busy, MicroBatcher
from graftkit.serving.payload import OPTIONS, PayloadError, parse_json, read_request
from graftkit.serving.settings import ServeSettings

logger = logging.getLogger("graftkit.serving")
access_log = logging.getLogger("graftkit.serving.access")

PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "inputs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "description": "one row: {\"text\": \"...\"}, or {\"image\": BASE64} / "
                                                 "{\"audio\": BASE64} with the file's bytes",
                "additionalProperties": {"type": "string"}}},
            **{name: {"type": "number", "description": text} for name, text in OPTIONS.items()}},
        "example": {"inputs": [{"text": "I lost my card"}]}}}},
}


def json_safe(value):
    """Non-finite floats as null (an unbounded conformal interval has an infinite bound; JSON has no inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, "status": status}, status_code=status, headers=headers)


def create_app(served: dict, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app answering for ``served`` (name -> ServedModel, see ``serving.models.load_served``)."""
    settings = settings or ServeSettings()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graftkit-infer")
    batchers = {name: MicroBatcher(model.predict, executor, enabled=settings.batching,
                                   max_batch_rows=settings.max_batch_rows, max_wait_ms=settings.max_wait_ms,
                                   max_queue_rows=settings.max_queue_rows)
                for name, model in served.items()}

    @asynccontextmanager
    async def lifespan(app):
        for batcher in batchers.values():
            batcher.start()
        logger.info("serving %s", ", ".join(served))
        yield
        # uvicorn has let in-flight requests finish before this runs (graceful shutdown)
        for batcher in batchers.values():
            await batcher.stop()
        executor.shutdown(wait=True)
        logger.info("stopped after %d forward passes", sum(b.batches for b in batchers.values()))

    app = FastAPI(title="graftkit", version=__version__, lifespan=lifespan,
                  description="Predictions of fitted graftkit models. Errors are one-line JSON: "
                              '{"error": ..., "field": ..., "status": ...}.')
    app.state.served, app.state.batchers, app.state.settings = served, batchers, settings

    @app.middleware("http")
    async def log_access(request: Request, call_next):
        started = time.perf_counter()
        request.state.log = {}
        try:
            response = await call_next(request)
        except Exception:  # a bug outside a route: logged with its traceback, answered without it
            logger.exception("unhandled error on %s %s", request.method, request.url.path)
            response = error(500, "internal error; the server log has the details")
        record = {"ts": round(time.time(), 3), "method": request.method, "path": request.url.path,
                  "status": response.status_code, "ms": round(1000 * (time.perf_counter() - started), 2),
                  "client": request.client.host if request.client else None, **request.state.log}
        access_log.info(json.dumps(record, ensure_ascii=True))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: f"no route {request.method} {request.url.path}; see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error(422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal error; the server log has the details")

    def authorised(request: Request) -> JSONResponse | None:
        if settings.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "missing bearer token; send the header 'Authorization: Bearer <key>'",
                         "Authorization", challenge)
        if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), settings.api_key.encode("utf-8")):
            return error(401, "the bearer token is not valid", "Authorization", challenge)
        return None

    @app.get("/health", summary="liveness: the models loaded and the batching in force")
    async def health():
        return {"status": "ok", "models": list(served), "batching": settings.batching}

    @app.get("/v1/models", summary="the models served: task, labels, backbone, strategy, fitted metrics")
    async def list_models(request: Request):
        refused = authorised(request)
        if refused is not None:
            return refused
        return json_safe({"models": [model.info() for model in served.values()]})

    @app.post("/v1/models/{name}/predict", openapi_extra={"requestBody": PREDICT_BODY},
              summary="predictions as the task writes them (prediction, p_<label>, interval bounds)")
    async def predict(name: str, request: Request):
        refused = authorised(request)
        if refused is not None:
            return refused
        model = served.get(name)
        if model is None:
            return error(404, f"no model named {name[:100]!r}; GET /v1/models lists them", "name")
        request.state.log["model"] = name
        try:
            inputs, options = await _read(request, model, settings)
        except PayloadError as exc:
            return error(exc.status, exc.message, exc.field)
        request.state.log["rows"] = len(inputs)
        try:
            records = await asyncio.wait_for(batchers[name].submit(inputs, options), settings.timeout_s)
        except TimeoutError:
            return error(504, f"no answer within {settings.timeout_s:g} s; send fewer rows or retry later")
        except Busy as exc:
            return error(503, f"{exc}; retry later", headers={"Retry-After": "1"})
        except GraftkitError as exc:
            return error(422, str(exc), "inputs")
        return {"model": name, "predictions": json_safe(records)}

    return app


async def _read(request: Request, model, settings: ServeSettings):
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise PayloadError(415, "Content-Type", f"Content-Type {content_type[:60]!r} is not accepted; send "
                                                "application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > settings.max_body_bytes):
        raise PayloadError(413, None, f"the body is over {settings.max_body_bytes} bytes; send fewer or smaller rows")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise PayloadError(413, None, f"the body is over {settings.max_body_bytes} bytes; send fewer or "
                                          "smaller rows")
        chunks.append(chunk)
    document = parse_json(b"".join(chunks))
    if model.modality == "text":
        return read_request(document, model, settings)
    return await run_in_threadpool(read_request, document, model, settings)  # decoding media: off the loop

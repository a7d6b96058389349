"""The FastAPI application: routers, the backend's lifecycle, and the one place where
errors become HTTP responses."""

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import preprocessing
from serving.api.routes import health, metrics, models, page, predict, read
from serving.backends import Backend, create_backend
from serving.errors import GatewayError
from serving.heap import freeze_long_lived_objects
from serving.observability import (
    REQUEST_ID_HEADER,
    GatewayMetrics,
    RequestContextMiddleware,
    request_id_of,
)
from serving.settings import Settings, load_settings

logger = logging.getLogger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    gateway_metrics = GatewayMetrics(multiprocess_dir=os.environ.get(MULTIPROC_DIR_VARIABLE))
    if backend is None:
        backend = create_backend(settings, observe_batch=gateway_metrics.batch_images.observe)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        preprocessing.warm_up()
        logger.info("preprocessing kernels ready in %.1f s", time.perf_counter() - started)
        await backend.start()
        freeze_long_lived_objects()
        logger.info("gateway started: backend=%s ready=%s", backend.kind, await backend.ready())
        try:
            yield
        finally:
            await backend.close()

    # /docs and /redoc's scripts and styles from the gateway, not a CDN: air-gapped clusters.
    app = FastAPIOffline(
        title="mnist-serving gateway",
        summary="Handwritten digit recognition: upload an image, get class probabilities.",
        version="1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.state.metrics = gateway_metrics

    for module in (predict, read, models, health, metrics, page):
        app.include_router(module.router)

    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (`serving.app:app_from_env`): settings from the environment."""
    return create_app(load_settings())


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = request_id_of(request.scope)
    return JSONResponse(
        status_code=status_code,
        content={"error": {"code": code, "message": message, "request_id": request_id}},
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


async def _gateway_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, GatewayError)
    log = logger.warning if error.status_code >= 500 else logger.info
    log(
        "request_id=%s answered %d %s: %s",
        request_id_of(request.scope),
        error.status_code,
        error.code,
        error.message,
    )
    return error_response(request, error.status_code, error.code, error.message, error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
    )
    return error_response(request, 422, "invalid_request", details or "invalid request")


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return error_response(request, error.status_code, code, str(error.detail), error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The traceback goes to the server log (here and from uvicorn), never to the client.
    logger.error(
        "request_id=%s failed unexpectedly",
        request_id_of(request.scope),
        exc_info=(type(error), error, error.__traceback__),
    )
    return error_response(request, 500, "internal_error", "internal server error")

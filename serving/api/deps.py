"""Typed dependencies the routes declare; the app factory puts the objects on app.state.

`async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, three
thread hops per request for three attribute reads (docs/benchmarks.md).
"""

from typing import Annotated

from fastapi import Depends, Request

from serving.backends.base import Backend
from serving.observability import GatewayMetrics
from serving.settings import Settings


async def get_backend(request: Request) -> Backend:
    return request.app.state.backend


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


BackendDep = Annotated[Backend, Depends(get_backend)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]

"""Typed dependencies the routes declare; the app factory puts the objects on app.state."""

from typing import Annotated

from fastapi import Depends, Request

from serving.backends.base import Backend
from serving.observability import GatewayMetrics
from serving.settings import Settings


def get_backend(request: Request) -> Backend:
    return request.app.state.backend


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


BackendDep = Annotated[Backend, Depends(get_backend)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]

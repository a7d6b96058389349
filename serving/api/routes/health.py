"""Liveness and readiness probes."""

from fastapi import APIRouter

from serving.api.deps import BackendDep
from serving.api.schemas import HealthResponse, error_responses
from serving.errors import BackendUnavailable, GatewayError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: a model is loaded and answers",
    responses=error_responses(BackendUnavailable, GatewayError),
)
async def readyz(backend: BackendDep) -> HealthResponse:
    if not await backend.ready():
        raise BackendUnavailable("no model is loaded yet", retry_after_seconds=1)
    return HealthResponse(status="ready")

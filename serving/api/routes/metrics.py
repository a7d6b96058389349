"""Prometheus scrape endpoint."""

from fastapi import APIRouter, Response

from serving.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
def metrics(gateway_metrics: MetricsDep) -> Response:
    # Sync: in multiprocess mode rendering reads every worker's files.
    body, content_type = gateway_metrics.render()
    return Response(content=body, media_type=content_type)

"""Prometheus metrics and the per-request context (request id, access log line, timings).

Metrics live in a registry owned by the app, not prometheus_client's global one, so two
apps in one process (tests) never collide. With several uvicorn workers each process
writes its samples to files in PROMETHEUS_MULTIPROC_DIR (the launcher creates it before
the workers start, because prometheus_client reads it at import) and /metrics aggregates
all workers' files, so any worker answers for the whole server.
"""

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("serving.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is echoed only when it is short and plain: it ends up in logs.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Confidence is a probability, and most of a good model's answers sit above 0.99: the
# buckets are finest where drift first shows.
CONFIDENCE_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)


class GatewayMetrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "gateway_stage_duration_seconds",
            "Time per stage: decode and preprocess per image, model per backend call.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "gateway_predictions",
            "Images classified, by predicted digit and the model version that answered.",
            ["digit", "model_version"],
            registry=self.registry,
        )
        self.not_a_digit = Counter(
            "gateway_not_a_digit",
            "Images judged not a digit (digit_score under the threshold), by model version.",
            ["model_version"],
            registry=self.registry,
        )
        self.confidence = Histogram(
            "gateway_prediction_confidence",
            "Confidence (probability of the predicted digit) of every image classified, "
            "by model version: what drift monitoring watches.",
            ["model_version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_images = Histogram(
            "gateway_batch_images",
            "Images per model call sent by the dynamic batcher (several requests combined).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "gateway_model_version",
            "The model version that answered the most recent prediction.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )

        # Children by label values: labels() takes a lock and builds the child's key on
        # every call, several calls a request. Label values are bounded (route templates,
        # statuses, stages, digits x versions), so the cache is too.
        self._children: dict[tuple, Counter | Histogram] = {}

    def child(self, metric, *labels: str):
        """metric.labels(*labels), cached."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.child(self.stage, stage).observe(time.perf_counter() - start)

    def render(self) -> tuple[bytes, str]:
        """The exposition text, aggregated over all workers in multiprocess mode."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id", "-")


class RequestContextMiddleware:
    """Request id (accepted from X-Request-ID or generated, always echoed), one access
    log line and the request metrics, for every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app raises before responding
        start = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.child(self.metrics.requests, method, route, str(status)).inc()
            self.metrics.child(self.metrics.latency, method, route).observe(elapsed)
            logger.info(
                "%s %s %d %.1fms request_id=%s",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                request_id,
            )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _ACCEPTABLE_REQUEST_ID.match(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    # The template ("/v1/predict"), never the raw path: unknown paths must not create
    # a time series each.
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"

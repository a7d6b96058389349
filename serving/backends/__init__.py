"""Backends: where probabilities come from. `create_backend` is the one place that picks one."""

from collections.abc import Callable

from serving.backends.base import Backend, BatchPrediction, ModelInfo
from serving.inline import InlineBudget
from serving.settings import Settings

__all__ = ["Backend", "BatchPrediction", "ModelInfo", "create_backend"]


def create_backend(
    settings: Settings, observe_batch: Callable[[int], None] | None = None
) -> Backend:
    """The backend named by GATEWAY_BACKEND, wrapped for dynamic batching when enabled
    (`observe_batch` is then told the size of every batch it sends)."""
    backend = _create_model_backend(settings)
    if settings.batching_enabled:
        from serving.backends.batching import BatchingBackend

        backend = BatchingBackend(
            backend,
            max_batch_size=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            observe_batch=observe_batch,
        )
    return backend


def _create_model_backend(settings: Settings) -> Backend:
    # Imported lazily: each backend pulls in heavy libraries the others do not need.
    if settings.backend == "embedded":
        from serving.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(
            model_name=settings.model_name,
            base_path=settings.model_base_path,
            poll_seconds=settings.model_poll_seconds,
            keep_versions=settings.model_keep_versions,
            timeout_seconds=settings.backend_timeout_seconds,
            intra_op_threads=settings.model_intra_op_threads,
            # Model calls run on the loop only behind the batcher: without it every request
            # made its own inline call, and the loop, blocked once per request, left some
            # connections waiting for seconds (1 worker, c=64: p95 1.6 s against 0.13 s).
            inline=InlineBudget(settings.inline_budget_ms if settings.batching_enabled else 0),
        )
    if settings.backend == "grpc":
        from serving.backends.tfserving.grpc import GrpcBackend

        return GrpcBackend(settings)
    if settings.backend == "rest":
        from serving.backends.tfserving.rest import RestBackend

        return RestBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")

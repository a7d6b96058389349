"""Backends: where probabilities come from. `BACKENDS` names them; `create_backend` is
the one place that picks one."""

from collections.abc import Callable

from serving.backends.base import Backend, BatchPrediction, ModelInfo
from serving.inline import InlineBudget
from serving.settings import Settings

__all__ = ["BACKENDS", "Backend", "BatchPrediction", "ModelInfo", "create_backend"]


def create_backend(
    settings: Settings, observe_batch: Callable[[int], None] | None = None
) -> Backend:
    """The backend named by GATEWAY_BACKEND, wrapped for dynamic batching when enabled
    (`observe_batch` is then told the size of every batch it sends)."""
    backend = BACKENDS[settings.backend](settings)
    if settings.batching_enabled:
        from serving.backends.batching import BatchingBackend

        backend = BatchingBackend(
            backend,
            max_batch_size=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            observe_batch=observe_batch,
        )
    return backend


# Each factory imports its backend itself: each pulls in heavy libraries (TensorFlow,
# gRPC, httpx) that the others do not need.
def _embedded(settings: Settings) -> Backend:
    from serving.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(
        model_name=settings.model_name,
        base_path=settings.model_base_path,
        poll_seconds=settings.model_poll_seconds,
        keep_versions=settings.model_keep_versions,
        timeout_seconds=settings.backend_timeout_seconds,
        intra_op_threads=settings.model_intra_op_threads,
        # Model calls run on the loop only behind the batcher: without it every request
        # made its own inline call and the loop, blocked once per request, left some
        # connections waiting for seconds (docs/benchmarks.md).
        inline=InlineBudget(settings.inline_budget_ms if settings.batching_enabled else 0),
    )


def _grpc(settings: Settings) -> Backend:
    from serving.backends.tfserving.grpc import GrpcBackend

    return GrpcBackend(settings)


def _rest(settings: Settings) -> Backend:
    from serving.backends.tfserving.rest import RestBackend

    return RestBackend(settings)


# GATEWAY_BACKEND -> its factory; settings.BackendKind names the same keys.
BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "embedded": _embedded,
    "grpc": _grpc,
    "rest": _rest,
}

"""What the gRPC and REST backends of TensorFlow Serving share.

Both talk to the same server through different protocols; everything that does not
depend on the protocol lives here: the default label, splitting batches larger than
the server's batching `max_batch_size`, checking an answer against the model contract
(contract.checks), the circuit breaker and the retry policy (`resilience`).
"""

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np

from serving.backends.base import DEFAULT_MODEL, Backend, BatchPrediction, ModelSelector
from serving.backends.tfserving.resilience import CircuitBreaker, Deadline, call_resilient
from serving.errors import GatewayError, InvalidRequest
from serving.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A readiness probe must answer fast even when the server hangs (kubelet's default
# probe timeout is 1 s).
READY_TIMEOUT_SECONDS = 1.0


class TFServingBackend(Backend):
    """A backend that asks a TensorFlow Serving server, with retries and a breaker."""

    def __init__(self, settings: Settings, target: str) -> None:
        self.target = target
        self.model_name = settings.model_name
        self.timeout_seconds = settings.backend_timeout_seconds
        self.max_batch_size = settings.tfserving_max_batch_size
        self.known_labels = settings.tfserving_version_labels
        self.default_label = settings.tfserving_default_label
        self._retries = settings.backend_retries
        self._backoff_seconds = settings.backend_retry_backoff_seconds
        self.breaker = CircuitBreaker(
            f"TF Serving ({self.kind}) at {target}",
            failure_threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
        )

    async def call(
        self,
        attempt: Callable[[float], Awaitable[T]],
        deadline: Deadline,
        *,
        retry: bool = True,
    ) -> T:
        return await call_resilient(
            attempt,
            breaker=self.breaker,
            deadline=deadline,
            retries=self._retries if retry else 0,
            backoff_base_seconds=self._backoff_seconds,
        )

    async def ready(self) -> bool:
        try:
            return await self.any_version_available(
                Deadline(min(self.timeout_seconds, READY_TIMEOUT_SECONDS))
            )
        except GatewayError as error:
            logger.info("not ready: %s", error.message)
            return False

    async def predict(
        self, images: np.ndarray, selector: ModelSelector = DEFAULT_MODEL
    ) -> BatchPrediction:
        version_number, label = selector.version, selector.label
        if version_number is None and label is None:
            label = self.default_label
        if len(images) == 0:
            raise InvalidRequest("no images to classify")
        deadline = Deadline(self.timeout_seconds)
        chunks = [
            images[start : start + self.max_batch_size]
            for start in range(0, len(images), self.max_batch_size)
        ]
        first = await self.predict_batch(chunks[0], version_number, label, deadline)
        if len(chunks) == 1:
            return first
        # Pin the other chunks to the version that answered the first, so a version
        # switch on the server mid-request cannot mix two models in one answer.
        pinned = int(first.model_version)
        others = await asyncio.gather(
            *(self.predict_batch(chunk, pinned, None, deadline) for chunk in chunks[1:])
        )
        return BatchPrediction(
            np.concatenate([first.probabilities, *(o.probabilities for o in others)]),
            first.model_version,
        )

    @abstractmethod
    async def any_version_available(self, deadline: Deadline) -> bool:
        """Whether the server reports a version of the model AVAILABLE."""

    @abstractmethod
    async def predict_batch(
        self,
        images: np.ndarray,
        version: int | None,
        label: str | None,
        deadline: Deadline,
    ) -> BatchPrediction:
        """One Predict call with at most max_batch_size images."""

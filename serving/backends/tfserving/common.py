"""What the gRPC and REST backends of TensorFlow Serving share.

Both talk to the same server through different protocols; everything that does not
depend on the protocol lives here: the default label, splitting batches larger than
the server's batching `max_batch_size`, checking an answer against the model contract
(contract.checks), noting versions without digit_score, the circuit breaker and the
retry policy (`resilience`).
"""

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np

from contract.checks import serves_digit_score
from serving.backends.base import (
    DEFAULT_MODEL,
    Backend,
    BatchPrediction,
    ModelSelector,
    VersionDetails,
    contract_checked,
    without_digit_score_note,
)
from serving.backends.tfserving.resilience import CircuitBreaker, Deadline, call_resilient
from serving.errors import BackendError, GatewayError, InvalidRequest
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
        self._noted_without_digit_score: set[str] = set()

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
        answers = [first, *others]
        with_scores = [a.digit_scores is not None for a in answers]
        if any(with_scores) and not all(with_scores):
            raise BackendError(f"version {pinned} answered digit_score for some chunks only")
        return BatchPrediction(
            np.concatenate([a.probabilities for a in answers]),
            first.model_version,
            np.concatenate([a.digit_scores for a in answers]) if all(with_scores) else None,
        )

    def checked_answer(
        self, probabilities: np.ndarray, digit_scores: np.ndarray | None, version: str, images: int
    ) -> BatchPrediction:
        """One Predict answer, checked against the model contract; the first answer of a
        version without digit_score is logged."""
        if digit_scores is None:
            self.note_without_digit_score(version)
        return contract_checked(
            BatchPrediction(probabilities, version, digit_scores), images, "TF Serving"
        )

    def details_of(self, version: str, signature_def_map: dict) -> VersionDetails:
        """What the served signature says of a version (metadata.json, and so its
        calibration, is not reachable through TF Serving)."""
        serves = serves_digit_score(signature_def_map)
        if not serves:
            self.note_without_digit_score(version)
        return VersionDetails(serves_digit_score=serves)

    def note_without_digit_score(self, version: str) -> None:
        """Log, once a version, that one the server serves has no digit_score: the
        gateway's counterpart of the embedded backend's line at load."""
        if version not in self._noted_without_digit_score:
            self._noted_without_digit_score.add(version)
            logger.warning(without_digit_score_note(version))

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

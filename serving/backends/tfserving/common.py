"""What the gRPC and REST backends of TensorFlow Serving share.

Both talk to the same server through different protocols; everything that does not
depend on the protocol lives here: argument checks for version/label, splitting
batches larger than the server's batching `max_batch_size`, checking an answer against
the model contract, checking the served signature against the contract, the circuit
breaker and the retry policy (`resilience`).
"""

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from contract import INPUT_KEY, INPUT_SHAPE, NUM_CLASSES, OUTPUT_KEY, SIGNATURE_NAME
from serving.backends.base import Backend, BatchPrediction
from serving.backends.tfserving.resilience import CircuitBreaker, Deadline, call_resilient
from serving.errors import BackendError, GatewayError, InvalidRequest
from serving.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A readiness probe must answer fast even when the server hangs (kubelet's default
# probe timeout is 1 s).
READY_TIMEOUT_SECONDS = 1.0


def parse_version(version: str | None) -> int | None:
    if version is None:
        return None
    if not version.isdigit() or int(version) <= 0:
        raise InvalidRequest(f"model version must be a positive integer, got {version!r}")
    return int(version)


def check_label(label: str | None) -> str | None:
    # TF Serving's REST path grammar takes a label up to the next "/" or ":".
    if label is not None and (not label or any(c in label for c in "/:?#% ")):
        raise InvalidRequest(f"invalid version label {label!r}")
    return label


def check_probabilities(probabilities: np.ndarray, batch_size: int) -> np.ndarray:
    if probabilities.shape != (batch_size, NUM_CLASSES):
        raise BackendError(
            f"the model answered shape {list(probabilities.shape)} for {batch_size} images; "
            f"the contract is [{batch_size}, {NUM_CLASSES}]"
        )
    return probabilities


def signature_contract_problems(signature_def_map: Mapping[str, Any]) -> list[str]:
    """Differences between a served SignatureDefMap (proto JSON, field names as in the
    proto) and the model contract; empty when the served model fits."""
    signature = signature_def_map.get("signature_def", {}).get(SIGNATURE_NAME)
    if signature is None:
        return [f"no signature {SIGNATURE_NAME!r}"]
    problems = []
    expected = {
        ("inputs", INPUT_KEY): [-1, *INPUT_SHAPE],
        ("outputs", OUTPUT_KEY): [-1, NUM_CLASSES],
    }
    for (side, key), shape in expected.items():
        info = signature.get(side, {}).get(key)
        if info is None:
            problems.append(f"{side} has no {key!r}")
            continue
        if info.get("dtype") != "DT_FLOAT":
            problems.append(f"{key!r} is {info.get('dtype')}, not DT_FLOAT")
        dims = [int(d.get("size", 0)) for d in info.get("tensor_shape", {}).get("dim", [])]
        if dims != shape:
            problems.append(f"{key!r} has shape {dims}, not {shape}")
    return problems


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
        self,
        images: np.ndarray,
        *,
        version: str | None = None,
        label: str | None = None,
    ) -> BatchPrediction:
        version_number = parse_version(version)
        label = check_label(label)
        if version_number is not None and label is not None:
            raise InvalidRequest("ask for a model version or a version label, not both")
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

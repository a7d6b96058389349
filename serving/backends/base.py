"""The interface every model backend implements (embedded, gRPC, REST).

Lifecycle: `start()` once at application start-up (loads or connects; must not raise
because a model server is down — readiness reports that instead), `predict()` per batch,
`close()` at shutdown. Backends raise only `serving.errors` exceptions on the request path.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from contract import DIGIT_SCORE_KEY
from contract.checks import digit_score_problem, probability_problem
from serving.errors import BackendError, InvalidRequest

# TF Serving's label grammar, narrowed to what is safe in its REST paths.
LABEL_PATTERN = r"^[A-Za-z0-9_-]+$"


@dataclass(frozen=True, slots=True)
class ModelSelector:
    """Which model answers: a version by number, a version by TF Serving label, or
    (neither) the default. Validated once, where a request names it; trusted below."""

    version: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise InvalidRequest("ask for a version or a label, not both")
        if self.version is not None and self.version <= 0:
            raise InvalidRequest(f"model version must be a positive integer, got {self.version}")
        if self.label is not None and not re.fullmatch(LABEL_PATTERN, self.label):
            raise InvalidRequest(f"invalid version label {self.label!r}")


DEFAULT_MODEL = ModelSelector()


@dataclass(frozen=True)
class VersionDetails:
    """What the gateway knows of one model version beyond its number."""

    serves_digit_score: bool  # False: exported before digit_score; every image is a digit
    # metadata.json's "calibration", as the trainer wrote it; None where it is not
    # readable (TF Serving backends) or absent (older exports).
    calibration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    # The version a request without version/label is answered by.
    version: str
    available_versions: tuple[str, ...] = ()
    version_labels: dict[str, str] = field(default_factory=dict)  # label -> version
    # version -> details, for the versions the backend knows them of.
    version_details: dict[str, VersionDetails] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchPrediction:
    probabilities: np.ndarray  # float32 [batch, NUM_CLASSES], rows sum to 1
    model_version: str  # the version that actually answered
    # float32 [batch] in [0, 1], the probability that each image holds a digit; None when
    # the version was exported before digit_score existed.
    digit_scores: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> "BatchPrediction":
        """The answer for images start..stop of the batch."""
        scores = self.digit_scores
        return BatchPrediction(
            self.probabilities[start:stop],
            self.model_version,
            None if scores is None else scores[start:stop],
        )


def without_digit_score_note(version: object) -> str:
    """The log line every backend writes once when it meets a version without digit_score."""
    return (
        f"model version {version} has no {DIGIT_SCORE_KEY!r} output (exported before it "
        "existed): every image it answers will count as a digit"
    )


def contract_checked(
    prediction: BatchPrediction, batch_size: int, answered_by: str
) -> BatchPrediction:
    """The answer itself when it fits the model contract (contract.checks: probabilities,
    and digit scores when the version has them), else BackendError naming who answered:
    what every backend does with every answer."""
    problem = probability_problem(prediction.probabilities, batch_size)
    if problem is None and prediction.digit_scores is not None:
        problem = digit_score_problem(prediction.digit_scores, batch_size)
    if problem:
        raise BackendError(f"{answered_by}'s answer breaks the model contract: {problem}")
    return prediction


class Backend(ABC):
    kind: ClassVar[str]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model or open connections."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abstractmethod
    async def ready(self) -> bool:
        """True when a model is loaded and answers."""

    @abstractmethod
    async def model_info(self) -> ModelInfo:
        """Name and versions; raises BackendUnavailable when unknown."""

    @abstractmethod
    async def predict(
        self, images: np.ndarray, selector: ModelSelector = DEFAULT_MODEL
    ) -> BatchPrediction:
        """Probabilities (and digit scores, when the version has them) for float32 images
        [batch, 28, 28, 1] in [0, 1] (the model contract)."""

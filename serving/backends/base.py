"""The interface every model backend implements (embedded, gRPC, REST).

Lifecycle: `start()` once at application start-up (loads or connects; must not raise
because a model server is down — readiness reports that instead), `predict()` per batch,
`close()` at shutdown. Backends raise only `serving.errors` exceptions on the request path.
"""

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from contract.checks import probability_problem
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


def contract_checked(probabilities: np.ndarray, batch_size: int, answered_by: str) -> np.ndarray:
    """The answer itself when it fits the model contract (contract.checks), else
    BackendError naming who answered: what every backend does with every answer."""
    problem = probability_problem(probabilities, batch_size)
    if problem:
        raise BackendError(f"{answered_by}'s answer breaks the model contract: {problem}")
    return probabilities


@dataclass(frozen=True)
class ModelInfo:
    name: str
    # The version a request without version/label is answered by.
    version: str
    available_versions: tuple[str, ...] = ()
    version_labels: dict[str, str] = field(default_factory=dict)  # label -> version


@dataclass(frozen=True)
class BatchPrediction:
    probabilities: np.ndarray  # float32 [batch, NUM_CLASSES], rows sum to 1
    model_version: str  # the version that actually answered


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
        """Probabilities for float32 images [batch, 28, 28, 1] in [0, 1] (the model contract)."""

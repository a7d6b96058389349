"""The interface every model backend implements (embedded, gRPC, REST).

Lifecycle: `start()` once at application start-up (loads or connects; must not raise
because a model server is down — readiness reports that instead), `predict()` per batch,
`close()` at shutdown. Backends raise only `serving.errors` exceptions on the request path.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


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
        self,
        images: np.ndarray,
        *,
        version: str | None = None,
        label: str | None = None,
    ) -> BatchPrediction:
        """Probabilities for float32 images [batch, 28, 28, 1] in [0, 1] (the model contract)."""

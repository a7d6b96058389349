"""Fixtures and helpers for the TF Serving tests: a two-version export and the test double.

Star-imported by the test modules that use them: pytest takes fixtures from a module's
namespace.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tfserving_double import TFServingDouble

from serving.settings import Settings

# Fixtures, for `from tfserving_support import *` in the test modules.
__all__ = ["double", "private_double", "shared_double", "two_version_base"]

LABELS = {"stable": 1, "canary": 2}


@pytest.fixture(scope="session")
def two_version_base(tiny_model_base, mnist_sample, tmp_path_factory) -> Path:
    """mnist/1 (the tiny model) and mnist/2 (trained from another seed: other answers)."""
    import keras

    from training.export import export_model
    from training.models import LADDER

    base = tmp_path_factory.mktemp("two-versions")
    shutil.copytree(tiny_model_base / "mnist" / "1", base / "mnist" / "1")
    keras.utils.set_random_seed(7)
    x = (mnist_sample["x_train"][..., None] / 255.0).astype(np.float32)
    model = LADDER["convnet"].build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, mnist_sample["y_train"], epochs=1, batch_size=64, verbose=0)
    export_model(model, base, {"model": "convnet", "purpose": "tests, version 2"}, x[:8])
    return base


@pytest.fixture(scope="session")
def shared_double(two_version_base) -> Iterator[TFServingDouble]:
    """One double for the session: versions 1 and 2, labels stable=1 and canary=2."""
    double = TFServingDouble(two_version_base, versions=[1, 2], labels=LABELS).start()
    yield double
    double.kill()


@pytest.fixture
def double(shared_double) -> Iterator[TFServingDouble]:
    """The shared double, its injected faults cleared after the test."""
    yield shared_double
    shared_double.set_faults(latency_seconds=0, fail_next=0)


@pytest.fixture
def private_double(two_version_base) -> Iterator[TFServingDouble]:
    """A double of the test's own, for tests that kill it."""
    double = TFServingDouble(two_version_base, versions=[1, 2], labels=LABELS).start()
    yield double
    double.kill()


def tfserving_settings(kind: str, double: TFServingDouble, model_base: Path, **overrides):
    values = {
        "backend": kind,
        "tfserving_grpc_target": double.grpc_target,
        "tfserving_rest_url": double.rest_url,
        "model_base_path": model_base / "mnist",
        "batching_enabled": False,
        "breaker_reset_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


def make_backend(kind: str, settings: Settings):
    from serving.backends.grpc import GrpcBackend
    from serving.backends.rest import RestBackend

    return {"grpc": GrpcBackend, "rest": RestBackend}[kind](settings)


def sample_images(mnist_sample, count: int, start: int = 0) -> np.ndarray:
    """MNIST test images as the contract's float32 [n, 28, 28, 1] in [0, 1]."""
    images = mnist_sample["x_test"][start : start + count]
    return (images[..., None] / 255.0).astype(np.float32)

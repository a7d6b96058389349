"""TF Serving fixtures: a two-version export and the test double serving it; an export
mixing a version with digit_score and one exported before it, and a double serving that."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.models import export_legacy_model, export_tiny_model
from tests.utils.tfserving import LABELS
from tests.utils.tfserving_double import TFServingDouble


@pytest.fixture(scope="session")
def two_version_base(tiny_model_base, mnist_sample, tmp_path_factory) -> Path:
    """mnist/1 (the tiny model) and mnist/2 (trained from another seed: other answers)."""
    base = tmp_path_factory.mktemp("two-versions")
    shutil.copytree(tiny_model_base / "mnist" / "1", base / "mnist" / "1")
    export_tiny_model(base, mnist_sample, seed=7, epochs=1, purpose="tests, version 2")
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


@pytest.fixture(scope="session")
def mixed_version_base(tiny_model_base, tmp_path_factory) -> Path:
    """mnist/1 (the tiny model: probabilities and digit_score) and mnist/2 (a version as
    exported before digit_score existed: probabilities only)."""
    base = tmp_path_factory.mktemp("mixed-versions")
    shutil.copytree(tiny_model_base / "mnist" / "1", base / "mnist" / "1")
    export_legacy_model(base, 2)
    return base


@pytest.fixture(scope="session")
def legacy_double(mixed_version_base) -> Iterator[TFServingDouble]:
    """A double serving mixed_version_base: versions 1 and 2, labels stable=1 and canary=2;
    no faults are injected into it."""
    double = TFServingDouble(mixed_version_base, versions=[1, 2], labels=LABELS).start()
    yield double
    double.kill()

"""The project's images, each built once per test session by scripts/images.sh."""

import pytest

from tests.utils.podman import built_image


@pytest.fixture(scope="session")
def gateway_image() -> str:
    return built_image("gateway")


@pytest.fixture(scope="session")
def train_image() -> str:
    return built_image("train")

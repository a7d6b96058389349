"""Gateway fixtures: the real app on the real tiny SavedModel, in-process and in uvicorn."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.utils.gateway_process import GatewayProcess
from tests.utils.gateway_setup import gateway_settings


@pytest.fixture(scope="module")
def client(tiny_model_base) -> Iterator[TestClient]:
    """The gateway app with its lifespan running, serving the tiny model (version 1)."""
    app = create_app(gateway_settings(tiny_model_base))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def model_base_copy(tiny_model_base, tmp_path) -> Path:
    """A private export base with the tiny model as version 1, for tests that add versions."""
    shutil.copytree(tiny_model_base / "mnist" / "1", tmp_path / "mnist" / "1")
    return tmp_path


@pytest.fixture(scope="module")
def gateway_server(tiny_model_base, tmp_path_factory) -> Iterator[GatewayProcess]:
    """The real launcher and uvicorn serving the tiny model on localhost."""
    log_path = tmp_path_factory.mktemp("gateway-log") / "gateway.log"
    server = GatewayProcess(
        {"GATEWAY_MODEL_BASE_PATH": str(tiny_model_base / "mnist"), "GATEWAY_LOG_LEVEL": "info"},
        log_path,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()

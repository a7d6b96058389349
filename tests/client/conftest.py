"""Real gateways for the client tests: `python -m serving` on free localhost ports."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.gateway_process import GatewayProcess, free_port

# Lower than the client's fallback chunk of 32: the client must cope with it.
SERVER_MAX_FILES = 16


def start_gateway(model_base: Path, log_path: Path, **settings: str) -> GatewayProcess:
    """A gateway on `model_base` with GATEWAY_<NAME> settings, started up (maybe not ready)."""
    gateway = GatewayProcess(
        {
            "GATEWAY_MODEL_BASE_PATH": str(model_base),
            "GATEWAY_LOG_LEVEL": "info",
            **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
        },
        log_path,
    )
    try:
        gateway.wait_alive()
    except (RuntimeError, TimeoutError) as error:
        gateway.stop()
        pytest.fail(f"the gateway did not start: {error}")
    return gateway


@pytest.fixture(scope="session")
def gateway(tiny_model_base, tmp_path_factory) -> Iterator[GatewayProcess]:
    """One gateway for the session: the tiny model, at most 16 files per request."""
    running = start_gateway(
        tiny_model_base / "mnist",
        tmp_path_factory.mktemp("client-gateway") / "gateway.log",
        max_files_per_request=str(SERVER_MAX_FILES),
    )
    assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200
    yield running
    running.stop()


@pytest.fixture
def launch_gateway(tmp_path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start extra gateways (model base path, GATEWAY_* settings); stopped after the test."""
    started: list[GatewayProcess] = []

    def launch(model_base: Path, **settings: str) -> GatewayProcess:
        log_path = tmp_path / f"gateway-{len(started)}.log"
        started.append(start_gateway(model_base, log_path, **settings))
        return started[-1]

    yield launch
    for running in started:
        running.stop()


@pytest.fixture
def dead_url() -> str:
    """A localhost URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def empty_model_base(tmp_path) -> Path:
    base = tmp_path / "models" / "mnist"
    base.mkdir(parents=True)
    return base


@pytest.fixture
def publish_model(tiny_model_base) -> Callable[[Path], None]:
    """Copy the tiny model in as version 1 the way exports do: write aside, rename in."""

    def publish(model_base: Path) -> None:
        staging = model_base / ".1.tmp"
        shutil.copytree(tiny_model_base / "mnist" / "1", staging)
        staging.rename(model_base / "1")

    return publish

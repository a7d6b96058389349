"""Gateway fixtures: the real app on the real tiny SavedModel, in-process and in uvicorn."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def gateway_settings(model_base: Path, **overrides) -> Settings:
    # Batching is the throughput engineer's layer, tested on its own; these tests pin
    # the plain request path.
    return Settings(model_base_path=model_base / "mnist", batching_enabled=False, **overrides)


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


def publish_version(model_base: Path, source_version: int, new_version: int) -> Path:
    """Copy a version under a new number the way the exporter does: staged, then renamed."""
    model_dir = model_base / "mnist"
    staging = model_dir / f".{new_version}-partial"
    shutil.copytree(model_dir / str(source_version), staging)
    final = model_dir / str(new_version)
    staging.rename(final)
    return final


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """`python -m serving` in a subprocess on a free localhost port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            **env,
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /readyz answers 200 (TensorFlow's import alone takes seconds)."""
        self._wait_for("/readyz", timeout)

    def wait_alive(self, timeout: float = 90.0) -> None:
        self._wait_for("/healthz", timeout)

    def _wait_for(self, path: str, timeout: float) -> None:
        # Polling is the only signal a separate process gives; 0.1 s steps, bounded.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gateway: no 200 from {path} in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


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

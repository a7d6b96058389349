"""Real gateways for the client tests: `python -m serving` on free localhost ports."""

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# uvicorn logs this once the application's start-up (model loading included) is done.
STARTED_MARKER = "Application startup complete"
START_TIMEOUT_SECONDS = 120
# Lower than the client's fallback chunk of 32: the client must cope with it.
SERVER_MAX_FILES = 16


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen
    log: list[str]
    max_files: int = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gateway(model_base: Path, **settings: str) -> Gateway:
    port = free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GATEWAY_MODEL_BASE_PATH": str(model_base),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_LOG_LEVEL": "info",
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    started = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if STARTED_MARKER in line:
                started.set()
        started.set()  # the process ended: stop waiting

    threading.Thread(target=pump, daemon=True).start()
    gateway = Gateway(f"http://127.0.0.1:{port}", process, log)
    if "max_files_per_request" in settings:
        gateway.max_files = int(settings["max_files_per_request"])
    if not started.wait(START_TIMEOUT_SECONDS) or process.poll() is not None:
        stop_gateway(gateway)
        pytest.fail("the gateway did not start:\n" + "".join(log[-40:]))
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()


@pytest.fixture(scope="session")
def gateway(tiny_model_base) -> Iterator[Gateway]:
    """One gateway for the session: the tiny model, at most 16 files per request."""
    running = start_gateway(tiny_model_base / "mnist", max_files_per_request=str(SERVER_MAX_FILES))
    assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200
    yield running
    stop_gateway(running)


@pytest.fixture
def launch_gateway() -> Iterator[Callable[..., Gateway]]:
    """Start extra gateways (model base path, GATEWAY_* settings); stopped after the test."""
    started: list[Gateway] = []

    def launch(model_base: Path, **settings: str) -> Gateway:
        started.append(start_gateway(model_base, **settings))
        return started[-1]

    yield launch
    for running in started:
        stop_gateway(running)


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

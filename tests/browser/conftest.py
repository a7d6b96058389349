"""A real gateway on 127.0.0.1 and Debian's Chromium driven by Playwright.

The gateway runs the real app (embedded backend, real SavedModel) under real uvicorn in
a thread of the test process; the browser is a separate Chromium process that reaches it
over TCP exactly as a user's browser would.
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.utils.environment import REPO_ROOT, require_tool

ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Gateway:
    url: str  # ends with "/": the page's own address


class _ThreadedServer:
    """uvicorn in a background thread, with an event for 'listening' instead of polling."""

    def __init__(self, app) -> None:
        import uvicorn

        started = threading.Event()

        class _Server(uvicorn.Server):
            async def startup(self, sockets=None) -> None:
                await super().startup(sockets)
                started.set()

        self._started = started
        self._server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> "_ThreadedServer":
        self._thread.start()
        # `started` is set once the app's start-up (model loading) finished and the
        # socket listens; a start-up failure ends the thread instead.
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._started.wait(timeout=0.5):
            if not self._thread.is_alive():
                raise RuntimeError("the gateway failed to start (see the log above)")
            if time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError("the gateway did not start in time")
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@contextmanager
def running_gateway(model_base_path: Path, **settings_overrides) -> Iterator[Gateway]:
    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(
        model_base_path=model_base_path, batching_enabled=False, **settings_overrides
    )
    with _ThreadedServer(create_app(settings)) as server:
        yield Gateway(url=f"http://127.0.0.1:{server.port}/")


@pytest.fixture
def start_gateway():
    """`with start_gateway(model_base_path, **settings) as gateway:` for a test's own gateway."""
    return running_gateway


@pytest.fixture(scope="module")
def gateway(well_trained_model_base) -> Iterator[Gateway]:
    """The gateway serving a real, well-trained model: drawn digits are read reliably."""
    with running_gateway(well_trained_model_base / "mnist") as running:
        yield running


@pytest.fixture(scope="module")
def gateway_without_model(tmp_path_factory) -> Iterator[Gateway]:
    """The gateway up, but its model directory is empty: predictions answer 503."""
    with running_gateway(tmp_path_factory.mktemp("no-model")) as running:
        yield running


# Module scope, not session: Playwright's sync API keeps an event loop running on the
# main thread while it is open, which breaks every asyncio test collected after it.
@pytest.fixture(scope="module")
def browser():
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test (no shared storage), high-DPI like a laptop."""
    context = browser.new_context(
        viewport={"width": 1100, "height": 800}, device_scale_factor=2, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR

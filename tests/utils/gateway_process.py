"""`python -m serving` in a subprocess on a free localhost port: the real launcher,
settings validation and uvicorn, as a user starts them."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.utils.environment import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """A gateway configured by GATEWAY_* variables (`env`), logging to `log_path`;
    `command` replaces `python -m serving` (the launcher started another way)."""

    def __init__(
        self, env: dict[str, str], log_path: Path, command: list[str] | None = None
    ) -> None:
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
            command or [sys.executable, "-m", "serving"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /readyz answers 200 (TensorFlow's import alone takes seconds)."""
        self.wait_for("/readyz", 200, timeout)

    def wait_alive(self, timeout: float = 90.0) -> None:
        """Until /healthz answers: start-up (model loading included) is over."""
        self.wait_for("/healthz", 200, timeout)

    def status(self, method: str, path: str, **kwargs) -> int:
        """The status of one request; 0 when nothing answers."""
        try:
            return httpx.request(method, self.url + path, timeout=10, **kwargs).status_code
        except httpx.TransportError:
            return 0

    def wait_for(
        self, path: str, expected: int, timeout: float, method: str = "GET", streak: int = 1, **kw
    ) -> None:
        """Until `streak` requests in a row answer `expected` (several workers share the
        port: a streak sees them all). Polling is the only signal a process gives."""
        deadline = time.monotonic() + timeout
        in_a_row = 0
        while in_a_row < streak:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway: {method} {path} never {expected}:\n{self.log()}")
            in_a_row = in_a_row + 1 if self.status(method, path, **kw) == expected else 0
            time.sleep(0.1)

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

"""Podman as scripts/images.sh runs it (runc, cgroupfs, no rlimits raised), for the tests
that build and run the project's images."""

import os
import subprocess

from tests.utils.environment import REPO_ROOT, require_tool

VERSION = "0.1.0"
BUILD_TIMEOUT_SECONDS = 1800
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(REPO_ROOT / "scripts" / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, check=check,
        timeout=timeout,
    )  # fmt: skip


def built_image(target: str) -> str:
    """scripts/images.sh's image for `target` (gateway, train), built if need be: its tag."""
    require_tool("podman")
    require_tool("debootstrap")
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "images.sh"), target],
        check=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    return f"mnist-serving/{target}:{VERSION}"

"""Where the repository is, and the system tools some tests drive."""

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE_PATH = REPO_ROOT / "data" / "mnist-sample.npz"


def require_tool(executable: str) -> str:
    """Path of a system tool a test drives; skip without it, except in CI where it must exist."""
    path = shutil.which(executable)
    if path is None:
        message = f"{executable} is not installed (make system-deps installs it)"
        if os.environ.get("MNIST_SERVING_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    return path

"""The training image, built by scripts/images.sh on the locally bootstrapped Debian base
(TensorFlow from PyPI: Dockerfile.train's BASE_IMAGE build argument) and run for real:
its command line, and a short training on the committed sample exported to a volume."""

import json
import subprocess

from tests.utils.environment import SAMPLE_PATH
from tests.utils.podman import podman


def podman_run(*args: str) -> subprocess.CompletedProcess:
    return podman("run", "--rm", "--network", "none", *args, check=False, timeout=600)


def test_the_training_command_line_runs_in_the_image(train_image):
    result = podman_run("--entrypoint", "python", train_image, "-m", "training", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
    for flag in ("--data", "--export-base", "--profile", "--min-accuracy"):
        assert flag in result.stdout


def test_a_short_training_in_the_image_exports_a_version_as_a_non_root_user(train_image, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    models.chmod(0o777)  # the job runs as uid 10001
    result = podman_run(
        "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/runs",
        "--volume", f"{SAMPLE_PATH}:/data/mnist.npz:ro", "--volume", f"{models}:/models",
        train_image,
        "--data", "/data/mnist.npz", "--model", "softmax", "--epochs", "1", "--seed", "1",
        "--no-tensorboard", "--no-report", "--progress", "epoch",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    version_dir = models / "mnist" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert (metadata["model"], metadata["epochs"], metadata["seed"]) == ("softmax", 1, 1)
    assert version_dir.stat().st_uid == 10001

"""The gateway image, built by scripts/images.sh with podman and run for real: non-root,
read-only root filesystem, no TensorFlow inside, answering through the gRPC backend
against the TF Serving double on the host network, its HEALTHCHECK passing."""

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from serving.app import create_app
from tests.utils.gateway_process import free_port
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import png
from tests.utils.podman import podman
from tests.utils.tfserving_double import TFServingDouble


@pytest.fixture(scope="module")
def double(tiny_model_base) -> Iterator[TFServingDouble]:
    server = TFServingDouble(tiny_model_base, versions=[1]).start()
    yield server
    server.kill()


@pytest.fixture(scope="module", params=["grpc", "rest"])
def container(request, gateway_image, double) -> Iterator[tuple[str, str]]:
    """The image as Kubernetes runs it (2 workers), on the host network, with the backend."""
    port = free_port()
    name = f"gateway-test-{request.param}-{port}"
    podman(
        "run", "--detach", "--name", name, "--network", "host", "--read-only",
        "--tmpfs", "/tmp", "--env", "GATEWAY_HOST=127.0.0.1", "--env", f"GATEWAY_PORT={port}",
        "--env", f"GATEWAY_BACKEND={request.param}",
        "--env", f"GATEWAY_TFSERVING_GRPC_TARGET={double.grpc_target}",
        "--env", f"GATEWAY_TFSERVING_REST_URL={double.rest_url}",
        "--env", "GATEWAY_WORKERS=2", gateway_image,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, name)
        yield name, url
    finally:
        podman("rm", "--force", name, check=False)


def _wait_ready(url: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
            break
        time.sleep(0.2)
    raise AssertionError(f"the gateway container never got ready:\n{podman('logs', name).stderr}")


def test_the_image_runs_as_its_own_user_on_a_read_only_root(container):
    name, _ = container
    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    written = podman("exec", name, "touch", "/opt/venv/written", check=False)
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr


def test_the_image_holds_no_tensorflow(container):
    name, _ = container
    found = podman(
        "exec", name, "python", "-c",
        "import importlib.util; print(importlib.util.find_spec('tensorflow') is None)",
    )  # fmt: skip
    assert found.stdout.strip() == "True"


def test_the_image_answers_what_the_embedded_backend_answers(
    container, tiny_model_base, mnist_sample
):
    from fastapi.testclient import TestClient

    _, url = container
    digits = [png(image) for image in mnist_sample["x_test"][:4]]
    files = [("file", (f"{i}.png", data)) for i, data in enumerate(digits)]
    answered = httpx.post(f"{url}/v1/predict", files=files, timeout=10)
    assert answered.status_code == 200
    with TestClient(create_app(gateway_settings(tiny_model_base))) as embedded:
        expected = embedded.post("/v1/predict", files=files).json()
    assert answered.json()["model"] == {"name": "mnist", "version": "1"}
    got = [p["probabilities"] for p in answered.json()["predictions"]]
    want = [p["probabilities"] for p in expected["predictions"]]
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_the_healthcheck_passes(container):
    name, _ = container
    assert podman("healthcheck", "run", name, check=False).returncode == 0


def test_the_embedded_backend_is_refused_with_the_extra_to_install(gateway_image):
    refused = podman(
        "run", "--rm", "--network", "none", "--env", "GATEWAY_BACKEND=embedded", gateway_image,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "install the `embedded` extra" in refused.stderr
    assert "Traceback" not in refused.stderr

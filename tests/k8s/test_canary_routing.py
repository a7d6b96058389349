"""Which model version answers, with the gateway configured exactly as an overlay does it.

The gateway gets the environment of the rendered gateway Deployment, only its TF Serving
addresses pointed at loopback, and talks gRPC to the TF Serving TEST DOUBLE
(tests/utils/tfserving_double.py: TF Serving's protocols from the official protos, answering
from real SavedModels; the real C++ server cannot run here) serving the versions and
labels pinned in serving/tfserving/models.canary.config.
"""

import io
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from google.protobuf import text_format
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2

from contract import MODEL_NAME
from serving.app import create_app
from tests.k8s.manifests import container, find, read_repo_file, resolve_env
from tests.utils.gateway_setup import settings_from
from tests.utils.tfserving_double import TFServingDouble


@pytest.fixture(scope="module")
def canary_model():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(read_repo_file("serving/tfserving/models.canary.config"), config)
    (model,) = config.model_config_list.config
    return model


@pytest.fixture(scope="module")
def double(canary_model, tiny_model_base, tmp_path_factory):
    """The pinned versions (copies of the tiny model: which one answered is the point)."""
    base = tmp_path_factory.mktemp("canary-base")
    versions = sorted(canary_model.model_version_policy.specific.versions)
    for version in versions:
        shutil.copytree(tiny_model_base / MODEL_NAME / "1", base / MODEL_NAME / str(version))
    server = TFServingDouble(base, versions=versions, labels=dict(canary_model.version_labels))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def digit_png(mnist_sample) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mnist_sample["x_test"][0].astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def gateway_as_deployed(rendered, overlay, double) -> TestClient:
    deployment = find(rendered[overlay], "Deployment", "gateway")
    environment = resolve_env(deployment, container(deployment, "gateway"))
    # The one difference from the cluster: TF Serving listens on loopback here.
    environment["GATEWAY_TFSERVING_GRPC_TARGET"] = double.grpc_target
    environment["GATEWAY_TFSERVING_REST_URL"] = double.rest_url
    return TestClient(create_app(settings_from(environment)), raise_server_exceptions=False)


def answering_version(client, digit_png, query="") -> str:
    response = client.post(f"/v1/predict{query}", files={"file": ("digit.png", digit_png)})
    assert response.status_code == 200, response.text
    return response.json()["model"]["version"]


def test_canary_overlay_sends_unlabelled_requests_to_stable(
    rendered, double, canary_model, digit_png
):
    stable = str(canary_model.version_labels["stable"])
    canary = str(canary_model.version_labels["canary"])
    assert stable != canary
    with gateway_as_deployed(rendered, "cpu-canary", double) as client:
        assert answering_version(client, digit_png) == stable
        assert answering_version(client, digit_png, "?label=stable") == stable
        assert answering_version(client, digit_png, "?label=canary") == canary


def test_without_the_canary_component_tf_serving_picks_the_highest_pinned_version(
    rendered, double, canary_model, digit_png
):
    """Why the canary component sets a default label on the gateway."""
    newest = str(max(canary_model.model_version_policy.specific.versions))
    with gateway_as_deployed(rendered, "cpu", double) as client:
        assert answering_version(client, digit_png) == newest

"""The rest backend on its own: predicts pinned to a resolved version (so the reported
version is the one that answered), re-resolution when that version goes away, the shared
client, and a server that is down. Servers are the TF Serving test double; behaviour
shared with grpc is in test_tfserving_gateway.py."""

import numpy as np
import pytest

from serving.backends.base import ModelSelector
from serving.errors import BackendUnavailable
from serving.settings import Settings
from tests.utils.models import sample_images
from tests.utils.tfserving import make_backend, tfserving_settings
from tests.utils.tfserving_double import TFServingDouble


async def test_every_predict_goes_to_an_explicit_version_path(
    double, two_version_base, mnist_sample
):
    backend = make_backend("rest", tfserving_settings("rest", double, two_version_base))
    await backend.start()
    before = double.stats()["paths"]
    try:
        default = await backend.predict(sample_images(mnist_sample, 2))
        stable = await backend.predict(
            sample_images(mnist_sample, 2), ModelSelector(label="stable")
        )
        version_1 = await backend.predict(sample_images(mnist_sample, 2), ModelSelector(version=1))
    finally:
        await backend.close()
    after = double.stats()["paths"]
    sent = {
        path: after[path] - before.get(path, 0)
        for path in after
        if after[path] != before.get(path, 0)
    }

    assert (default.model_version, stable.model_version, version_1.model_version) == ("2", "1", "1")
    assert sent == {
        "/v1/models/mnist/versions/2:predict": 1,
        "/v1/models/mnist/versions/1:predict": 2,
    }
    np.testing.assert_allclose(stable.probabilities, version_1.probabilities, atol=1e-6)


async def test_a_resolved_version_that_goes_away_is_resolved_again(
    private_double, two_version_base, mnist_sample
):
    images = sample_images(mnist_sample, 3)
    settings = tfserving_settings(
        "rest", private_double, two_version_base, tfserving_version_cache_seconds=600
    )
    backend = make_backend("rest", settings)
    await backend.start()
    try:
        assert (await backend.predict(images)).model_version == "2"
        # The server restarts serving only version 1 (a rollback): the cached "2" is stale.
        private_double.kill()
        private_double.versions = [1]
        private_double.start()
        answer = await backend.predict(images)
    finally:
        await backend.close()

    assert answer.model_version == "1"
    assert private_double.stats()["paths"] == {
        "/v1/models/mnist/versions/2:predict": 1,  # 404: version 2 is gone
        "/v1/models/mnist/versions/1:predict": 1,
    }


async def test_default_label_pins_unlabelled_requests(double, two_version_base, mnist_sample):
    settings = tfserving_settings(
        "rest", double, two_version_base, tfserving_default_label="stable"
    )
    backend = make_backend("rest", settings)
    await backend.start()
    try:
        unlabelled = await backend.predict(sample_images(mnist_sample, 1))
        info = await backend.model_info()
        canary = await backend.predict(
            sample_images(mnist_sample, 1), ModelSelector(label="canary")
        )
    finally:
        await backend.close()

    assert unlabelled.model_version == info.version == "1"
    assert canary.model_version == "2"


async def test_server_down_means_not_ready_and_503(two_version_base):
    down = TFServingDouble(two_version_base)
    down.rest_port = 9  # discard: nothing listens
    backend = make_backend("rest", Settings(backend="rest", tfserving_rest_url=down.rest_url))
    await backend.start()
    try:
        assert await backend.ready() is False
        with pytest.raises(BackendUnavailable) as raised:
            await backend.predict(np.zeros((1, 28, 28, 1), np.float32), ModelSelector(version=1))
        assert raised.value.status_code == 503
        assert raised.value.headers["Retry-After"] == "1"
    finally:
        await backend.close()

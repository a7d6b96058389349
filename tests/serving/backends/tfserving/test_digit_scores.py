"""digit_score through the grpc and rest backends, against the TF Serving test double
(which runs the real SavedModels): the scores are the SavedModel's own, and a version
exported before digit_score existed is served with none, said once in the log. Each test
runs once per protocol; expected values come from calling the SavedModel with TensorFlow."""

import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient

from contract import DIGIT_SCORE_KEY, OUTPUT_KEY
from serving.app import create_app
from serving.backends.base import ModelSelector, VersionDetails
from tests.utils.imagefiles import png
from tests.utils.models import sample_images
from tests.utils.tfserving import make_backend, tfserving_settings

KINDS = ["grpc", "rest"]


def savedmodel_outputs(model_base, version: int, images) -> dict[str, np.ndarray]:
    import tensorflow as tf

    model = tf.saved_model.load(str(model_base / "mnist" / str(version)))
    outputs = model.signatures["serving_default"](image=tf.constant(images))
    return {key: value.numpy() for key, value in outputs.items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [1, 10])  # one image: a [1] tensor; ten: three chunks
async def test_digit_scores_are_what_the_savedmodel_computes(
    kind, count, double, two_version_base, mnist_sample
):
    images = sample_images(mnist_sample, count)
    settings = tfserving_settings(kind, double, two_version_base, tfserving_max_batch_size=4)
    backend = make_backend(kind, settings)
    await backend.start()
    try:
        answers = {
            version: await backend.predict(images, selector)
            for version, selector in ((2, ModelSelector()), (1, ModelSelector(label="stable")))
        }
    finally:
        await backend.close()

    for version, answer in answers.items():
        expected = savedmodel_outputs(two_version_base, version, images)
        assert answer.model_version == str(version)
        assert answer.digit_scores is not None
        assert answer.digit_scores.dtype == np.float32
        np.testing.assert_allclose(answer.digit_scores, expected[DIGIT_SCORE_KEY], atol=1e-6)
        np.testing.assert_allclose(answer.probabilities, expected[OUTPUT_KEY], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_version_without_digit_score_is_served_and_noted_once(
    kind, legacy_double, mixed_version_base, mnist_sample, caplog
):
    images = sample_images(mnist_sample, 6)
    settings = tfserving_settings(
        kind, legacy_double, mixed_version_base, tfserving_max_batch_size=4
    )
    backend = make_backend(kind, settings)
    await backend.start()
    try:
        with caplog.at_level(logging.INFO, logger="serving.backends.tfserving.common"):
            legacy = await backend.predict(images)  # the highest version: 2, the old one
            again = await backend.predict(images, ModelSelector(version=2))
            newer = await backend.predict(images, ModelSelector(version=1))
            info = await backend.model_info()
    finally:
        await backend.close()

    assert (legacy.model_version, legacy.digit_scores) == ("2", None)
    assert again.digit_scores is None
    expected = savedmodel_outputs(mixed_version_base, 2, images)
    assert list(expected) == [OUTPUT_KEY]
    np.testing.assert_allclose(legacy.probabilities, expected[OUTPUT_KEY], atol=1e-6)
    expected_newer = savedmodel_outputs(mixed_version_base, 1, images)
    np.testing.assert_allclose(newer.digit_scores, expected_newer[DIGIT_SCORE_KEY], atol=1e-6)
    notes = [r.getMessage() for r in caplog.records if "digit_score" in r.getMessage()]
    assert notes == [
        "model version 2 has no 'digit_score' output (exported before it existed): "
        "every image it answers will count as a digit"
    ]
    # From the served signatures: metadata.json, and so calibration, is not reachable.
    assert info.version_details == {
        "2": VersionDetails(serves_digit_score=False),
        "1": VersionDetails(serves_digit_score=True),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_the_gateway_answers_is_digit_and_digit_score_from_each_version(
    kind, legacy_double, mixed_version_base, mnist_sample
):
    image = mnist_sample["x_test"][0]
    files = {"file": ("seven.png", png(image))}
    settings = tfserving_settings(kind, legacy_double, mixed_version_base, digit_threshold=0.25)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        legacy = client.post("/v1/predict", files=files)
        newer = client.post("/v1/predict?version=1", files=files)
        models = client.get("/v1/models")

    assert legacy.status_code == newer.status_code == models.status_code == 200
    [old] = legacy.json()["predictions"]
    assert (old["is_digit"], old["digit_score"]) == (True, None)
    [new] = newer.json()["predictions"]
    assert isinstance(new["digit_score"], float)
    assert new["is_digit"] is (new["digit_score"] >= 0.25)
    body = models.json()
    assert body["digit_threshold"] == 0.25
    assert body["version_details"] == {
        "2": {"serves_digit_score": False, "calibration": None},
        "1": {"serves_digit_score": True, "calibration": None},
    }

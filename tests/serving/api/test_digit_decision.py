""" "Is it a digit at all?" through HTTP: every prediction carries is_digit and the model's
digit_score, GATEWAY_DIGIT_THRESHOLD decides, the decision shows in /metrics, and
/v1/models says the threshold in force and what each version's metadata.json records of
its calibration. Real app, real tiny SavedModel (it has digit_score), real PNG uploads;
expected scores come from the SavedModel called with TensorFlow on the gateway's own
preprocessing of the same bytes."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from contract import DIGIT_SCORE_KEY, DIGIT_THRESHOLD, METADATA_FILENAME, SIGNATURE_NAME
from serving.app import create_app
from serving.backends.base import DEFAULT_MODEL, Backend, BatchPrediction, ModelInfo
from serving.backends.batching import BatchingBackend
from serving.preprocessing import preprocess
from tests.serving.test_observability import sample, samples
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import png
from tests.utils.models import export_legacy_model

PREDICT = "/v1/predict"
IMAGES = 12


@pytest.fixture(scope="module")
def uploads(mnist_sample) -> list[tuple[str, bytes]]:
    return [(f"{i}.png", png(image)) for i, image in enumerate(mnist_sample["x_test"][:IMAGES])]


def multipart(uploads):
    return [("file", (name, data, "image/png")) for name, data in uploads]


def app_client(model_base, **settings) -> TestClient:
    app = create_app(gateway_settings(model_base, **settings))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def default_answer(client, uploads) -> list[dict]:
    response = client.post(PREDICT, files=multipart(uploads))
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_each_prediction_carries_the_models_digit_score_and_the_decision(
    default_answer, uploads, tiny_model_base
):
    import tensorflow as tf

    model = tf.saved_model.load(str(tiny_model_base / "mnist" / "1"))
    inputs = np.stack([preprocess(data, max_pixels=10**7) for _, data in uploads])
    expected = model.signatures[SIGNATURE_NAME](image=tf.constant(inputs))[DIGIT_SCORE_KEY]

    for prediction, score in zip(default_answer, expected.numpy(), strict=True):
        assert list(prediction) == [
            "filename",
            "digit",
            "confidence",
            "is_digit",
            "digit_score",
            "probabilities",
        ]
        assert prediction["digit_score"] == pytest.approx(float(score), abs=2e-6)
        assert prediction["is_digit"] is bool(score >= DIGIT_THRESHOLD)


def test_a_threshold_of_one_makes_every_image_not_a_digit_and_changes_nothing_else(
    tiny_model_base, uploads, default_answer
):
    # A float32 score saturates at exactly 1.0 for a very confident model, and 1.0 >= 1.0
    # is still a digit: only images scored below 1 are checked (most of them).
    below_one = [i for i, p in enumerate(default_answer) if p["digit_score"] < 1.0]
    assert len(below_one) >= IMAGES // 2
    with app_client(tiny_model_base, digit_threshold=1.0) as strict:
        response = strict.post(PREDICT, files=multipart([uploads[i] for i in below_one]))
        metrics = strict.get("/metrics").text

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["is_digit"] for p in predictions] == [False] * len(below_one)
    for prediction, index in zip(predictions, below_one, strict=True):
        unchanged = {k: v for k, v in default_answer[index].items() if k != "is_digit"}
        assert {k: v for k, v in prediction.items() if k != "is_digit"} == unchanged
    assert sample(metrics, "gateway_not_a_digit_total", model_version="1") == len(below_one)


def test_a_threshold_of_zero_makes_every_image_a_digit(tiny_model_base, uploads):
    with app_client(tiny_model_base, digit_threshold=0.0) as lenient:
        response = lenient.post(PREDICT, files=multipart(uploads))
        metrics = lenient.get("/metrics").text

    assert [p["is_digit"] for p in response.json()["predictions"]] == [True] * IMAGES
    assert samples(metrics, "gateway_not_a_digit_total") == {}


def test_models_shows_the_threshold_outputs_and_each_versions_calibration(
    model_base_copy, mnist_sample
):
    calibration = {
        "temperature": 1.318,
        "ece_test_before": 0.0214,
        "ece_test_after": 0.0037,
        "false_rejection_rate": 0.0041,
        "rejection_rate": 0.9893,
    }
    metadata_path = model_base_copy / "mnist" / "1" / METADATA_FILENAME
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps(metadata | {"calibration": calibration}))
    with app_client(model_base_copy, digit_threshold=0.8) as client:
        body = client.get("/v1/models").json()

    assert body["digit_threshold"] == 0.8
    assert body["output"] == {"name": "probabilities", "dtype": "float32", "shape": [None, 10]}
    assert body["outputs"] == [
        {"name": "probabilities", "dtype": "float32", "shape": [None, 10]},
        {"name": "digit_score", "dtype": "float32", "shape": [None]},
    ]
    assert body["version_details"] == {
        "1": {"serves_digit_score": True, "calibration": calibration}
    }


def test_a_version_without_digit_score_answers_every_image_as_a_digit(
    model_base_copy, uploads, caplog
):
    export_legacy_model(model_base_copy, 2)
    with app_client(model_base_copy, digit_threshold=1.0) as client:
        old = client.post(PREDICT, files=multipart(uploads[:3]))
        new = client.post(f"{PREDICT}?version=1", files=multipart(uploads[:3]))
        models = client.get("/v1/models").json()
        metrics = client.get("/metrics").text

    assert "model version 2 has no 'digit_score' output" in caplog.text
    assert old.json()["model"]["version"] == "2"
    assert [(p["is_digit"], p["digit_score"]) for p in old.json()["predictions"]] == [
        (True, None)
    ] * 3
    assert all(isinstance(p["digit_score"], float) for p in new.json()["predictions"])
    assert models["version_details"] == {
        "2": {"serves_digit_score": False, "calibration": None},
        "1": {"serves_digit_score": True, "calibration": None},
    }
    assert samples(metrics, "gateway_not_a_digit_total").keys() <= {("1",)}


class NaNDigitScores(Backend):
    """Good probabilities, NaN digit scores: a model server that broke the contract."""

    kind = "nan-digit-score"

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1")

    async def predict(self, images, selector=DEFAULT_MODEL) -> BatchPrediction:
        probabilities = np.full((len(images), 10), 0.1, np.float32)
        return BatchPrediction(probabilities, "1", np.full(len(images), np.nan, np.float32))


def test_a_digit_score_that_breaks_the_contract_answers_502(tiny_model_base, uploads):
    backend = BatchingBackend(NaNDigitScores(), max_batch_size=64, max_wait_ms=1)
    app = create_app(gateway_settings(tiny_model_base), backend=backend)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(PREDICT, files=multipart(uploads[:2]))

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "backend_error"
    assert error["message"] == (
        "the nan-digit-score backend's answer breaks the model contract: "
        "a digit_score is not a probability in [0, 1]"
    )


def test_openapi_documents_is_digit_and_a_nullable_digit_score(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    prediction = schemas["Prediction"]
    assert {"is_digit", "digit_score"} <= set(prediction["required"])
    assert prediction["properties"]["is_digit"]["type"] == "boolean"
    score = prediction["properties"]["digit_score"]
    assert score["anyOf"] == [{"type": "number", "maximum": 1.0, "minimum": 0.0}, {"type": "null"}]
    assert "null for a model version exported before digit_score" in score["description"]
    models = schemas["ModelsResponse"]["properties"]
    assert {"digit_threshold", "outputs", "version_details"} <= set(models)

"""Every endpoint of the gateway, through the real app serving the real tiny SavedModel."""

import base64
import inspect
import re

import numpy as np
import pytest

from contract import DIGIT_THRESHOLD, LABELS, NUM_CLASSES
from serving.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadImage,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoInk,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from tests.utils.imagefiles import dark_on_white, png


@pytest.fixture(scope="module")
def clear_digits(client, mnist_sample) -> list[tuple[np.ndarray, int]]:
    """Test digits the tiny model gets right with a clear margin, one per class."""
    chosen = {}
    for image, label in zip(mnist_sample["x_test"], mnist_sample["y_test"], strict=True):
        if int(label) in chosen:
            continue
        answer = client.post("/v1/predict", files={"file": ("d.png", png(image))}).json()
        prediction = answer["predictions"][0]
        if prediction["digit"] == label and prediction["confidence"] > 0.9:
            chosen[int(label)] = image
        if len(chosen) == NUM_CLASSES:
            break
    assert len(chosen) == NUM_CLASSES, f"only found clear digits for {sorted(chosen)}"
    return [(chosen[digit], digit) for digit in range(NUM_CLASSES)]


def test_predict_answers_one_prediction_per_file_in_upload_order(client, clear_digits):
    files = [("file", (f"digit-{label}.png", png(image))) for image, label in clear_digits]
    files.reverse()
    response = client.post("/v1/predict", files=files)

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "mnist", "version": "1"}
    assert [p["filename"] for p in body["predictions"]] == [name for _, (name, _) in files]
    assert [p["digit"] for p in body["predictions"]] == list(range(9, -1, -1))
    for prediction in body["predictions"]:
        probabilities = prediction["probabilities"]
        assert len(probabilities) == NUM_CLASSES
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert prediction["confidence"] == max(probabilities)
        assert probabilities[prediction["digit"]] == prediction["confidence"]
        # Clear test digits are digits: the model's digit_score is above the threshold.
        assert prediction["is_digit"] is True
        assert DIGIT_THRESHOLD <= prediction["digit_score"] <= 1


def test_predict_accepts_json_base64_images_including_data_urls(client, clear_digits):
    (three, _), (seven, _) = clear_digits[3], clear_digits[7]
    images = [
        base64.b64encode(png(three)).decode(),
        "data:image/png;base64," + base64.b64encode(png(seven)).decode(),
    ]
    response = client.post("/v1/predict", json={"images": images})

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["digit"] for p in predictions] == [3, 7]
    assert [p["filename"] for p in predictions] == [None, None]


def test_predict_reads_dark_ink_on_white_like_mnist_polarity(client, clear_digits):
    image, label = clear_digits[4]
    response = client.post("/v1/predict", files={"file": ("paper.png", png(dark_on_white(image)))})
    assert response.json()["predictions"][0]["digit"] == label


def test_predict_passes_a_loaded_version_and_refuses_an_unknown_one(client, clear_digits):
    image, _ = clear_digits[1]
    files = {"file": ("one.png", png(image))}

    assert client.post("/v1/predict?version=1", files=files).json()["model"]["version"] == "1"

    unknown = client.post("/v1/predict?version=99", files=files)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert "99" in unknown.json()["error"]["message"]


def test_predict_refuses_labels_on_the_embedded_backend_with_a_clear_404(client, clear_digits):
    response = client.post(
        "/v1/predict?label=stable", files={"file": ("x.png", png(clear_digits[0][0]))}
    )
    assert response.status_code == 404
    assert "label" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "query", ["version=abc", "version=0", "version=1&label=stable", "label=no%20spaces"]
)
def test_predict_rejects_malformed_version_or_label_with_422(client, clear_digits, query):
    response = client.post(
        f"/v1/predict?{query}", files={"file": ("x.png", png(clear_digits[0][0]))}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_models_describes_name_versions_backend_contract_and_labels(client):
    response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "mnist"
    assert body["version"] == "1"
    assert body["versions"] == ["1"]
    assert body["backend"] == "embedded"
    assert body["signature"] == "serving_default"
    assert body["input"]["name"] == "image"
    assert body["input"]["shape"] == [None, 28, 28, 1]
    assert body["input"]["dtype"] == "float32"
    assert body["output"] == {"name": "probabilities", "dtype": "float32", "shape": [None, 10]}
    assert [output["name"] for output in body["outputs"]] == ["probabilities", "digit_score"]
    assert body["digit_threshold"] == DIGIT_THRESHOLD
    assert body["version_details"] == {"1": {"serves_digit_score": True, "calibration": None}}
    assert body["labels"] == list(LABELS)


def test_healthz_and_readyz_answer_ok_with_a_model_loaded(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_request_id_is_echoed_when_given(client):
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert given.headers["X-Request-ID"] == "trace-42"


@pytest.mark.parametrize(
    "given", [None, "a b\tinjected", "x" * 129, "semi;colon"], ids=["none", "spaces", "long", ";"]
)
def test_a_new_request_id_is_generated_without_an_acceptable_one(client, given):
    headers = {"Content-Type": "text/plain"} | ({} if given is None else {"X-Request-ID": given})
    ids = []
    for _ in range(2):
        response = client.post("/v1/predict", content=b"x", headers=headers)
        request_id = response.headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert response.json()["error"]["request_id"] == request_id
        ids.append(request_id)
    assert ids[0] != ids[1]


def test_errors_carry_the_request_id_of_their_request(client):
    response = client.post(
        "/v1/predict", content=b"x", headers={"Content-Type": "text/plain", "X-Request-ID": "r-1"}
    )
    assert response.json()["error"]["request_id"] == "r-1"
    assert response.headers["X-Request-ID"] == "r-1"


def test_unknown_paths_and_methods_answer_the_same_error_shape(client):
    missing = client.get("/v2/predict")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    wrong_method = client.get("/v1/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_predict_with_both_body_types_and_examples(client):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["items"] == {
        "type": "string",
        "format": "binary",
    }
    assert content["application/json"]["example"]["images"]
    assert client.get("/docs").status_code == 200


# The README's error table: every status /v1/predict answers with, and its codes.
PREDICT_ERRORS = {
    400: [BadImage],
    404: [ModelNotFound],
    413: [PayloadTooLarge],
    415: [UnsupportedMediaType],
    422: [InvalidRequest, NoInk],
    500: [GatewayError],
    502: [BackendError],
    503: [BackendUnavailable],
    504: [BackendTimeout],
}


def test_openapi_documents_the_model_choice_from_the_routes_declarations(client):
    parameters = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["parameters"]
    described = {p["name"]: (p["in"], p["required"], p["schema"]) for p in parameters}
    assert described == {
        "version": (
            "query",
            False,
            {
                "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}],
                "description": "a model version to ask for",
                "title": "Version",
            },
        ),
        "label": (
            "query",
            False,
            {
                "anyOf": [{"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}, {"type": "null"}],
                "description": "a version label (TF Serving)",
                "title": "Label",
            },
        ),
    }


def test_with_or_without_a_query_string_the_answer_is_the_same(client, clear_digits):
    files = {"file": ("x.png", png(clear_digits[0][0]))}
    plain = client.post("/v1/predict", files=files)
    asked = client.post("/v1/predict?version=1", files=files)
    unrelated = client.post("/v1/predict?verbose=1", files=files)  # unknown: ignored
    assert plain.status_code == asked.status_code == unrelated.status_code == 200
    assert plain.json() == asked.json() == unrelated.json()


def test_openapi_lists_exactly_the_errors_predict_answers_with(client):
    responses = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["responses"]
    assert set(responses) == {"200", *map(str, PREDICT_ERRORS)}
    for status, errors in PREDICT_ERRORS.items():
        response = responses[str(status)]
        assert [error.status_code for error in errors] == [status] * len(errors)
        assert response["description"] == "\n\n".join(
            f"`{error.code}`: {' '.join(inspect.getdoc(error).split())}" for error in errors
        )
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert [error.code for errors in PREDICT_ERRORS.values() for error in errors] == [
        "bad_image",
        "model_not_found",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_request",
        "no_ink",
        "internal_error",
        "backend_error",
        "backend_unavailable",
        "backend_timeout",
    ]


def test_openapi_documents_the_errors_of_models_and_readyz(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/models"]["get"]["responses"]) == {"200", "500", "502", "503", "504"}
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "500", "503"}


def test_openapi_json_example_is_a_real_image_the_gateway_accepts(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    response = client.post("/v1/predict", json=body["example"])
    assert response.status_code == 200

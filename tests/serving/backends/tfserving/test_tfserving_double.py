"""The TF Serving test double answers as TF Serving documents: the gateway's error mapping
is only as good as the shapes it is tested against.

References: https://www.tensorflow.org/tfx/serving/api_rest (paths, JSON, `{"error": ...}`)
and tensorflow_serving/apis/*.proto (gRPC), with the status -> HTTP mapping of TF
Serving's http_server.cc.
"""

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.utils.models import sample_images

MODEL = "/v1/models/mnist"


@pytest.fixture
def rest(double):
    with httpx.Client(base_url=double.rest_url, timeout=30) as client:
        yield client


@pytest.fixture
def channel(double):
    with grpc.insecure_channel(double.grpc_target) as opened:
        yield opened


def assert_error(response: httpx.Response, status: int, message_part: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert message_part in body["error"]


def savedmodel_outputs(model_base, version: int, images) -> dict[str, np.ndarray]:
    model = tf.saved_model.load(str(model_base / "mnist" / str(version)))
    outputs = model.signatures["serving_default"](image=tf.constant(images))
    return {key: value.numpy() for key, value in outputs.items()}


def test_rest_predict_answers_what_the_savedmodel_computes(rest, two_version_base, mnist_sample):
    images = sample_images(mnist_sample, 4)
    response = rest.post(f"{MODEL}/versions/1:predict", json={"instances": images.tolist()})

    assert response.status_code == 200
    # Two outputs: the row format answers one object per instance, named by output.
    rows = response.json()["predictions"]
    assert [sorted(row) for row in rows] == [["digit_score", "probabilities"]] * 4
    direct = savedmodel_outputs(two_version_base, 1, images)
    probabilities = np.asarray([row["probabilities"] for row in rows], np.float32)
    scores = np.asarray([row["digit_score"] for row in rows], np.float32)
    np.testing.assert_allclose(probabilities, direct["probabilities"], atol=1e-6)
    np.testing.assert_allclose(scores, direct["digit_score"], atol=1e-6)


def test_rest_columnar_inputs_answer_outputs(rest, mnist_sample):
    images = sample_images(mnist_sample, 2).tolist()
    rows = rest.post(f"{MODEL}:predict", json={"instances": images}).json()["predictions"]
    columns = rest.post(f"{MODEL}:predict", json={"inputs": {"image": images}}).json()

    # Two outputs: columnar answers an object of one array per output.
    assert list(columns) == ["outputs"]
    assert columns["outputs"] == {
        "probabilities": [row["probabilities"] for row in rows],
        "digit_score": [row["digit_score"] for row in rows],
    }


def test_a_version_with_one_output_answers_its_value_in_both_formats(
    legacy_double, mixed_version_base, mnist_sample
):
    images = sample_images(mnist_sample, 2)
    with httpx.Client(base_url=legacy_double.rest_url, timeout=30) as client:
        rows = client.post(f"{MODEL}/versions/2:predict", json={"instances": images.tolist()})
        columns = client.post(
            f"{MODEL}/versions/2:predict", json={"inputs": {"image": images.tolist()}}
        )
    direct = savedmodel_outputs(mixed_version_base, 2, images)

    assert list(direct) == ["probabilities"]
    # One output: each row is its value, and "outputs" is the value itself (TF Serving's
    # MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors).
    np.testing.assert_allclose(
        np.asarray(rows.json()["predictions"], np.float32), direct["probabilities"], atol=1e-6
    )
    assert columns.json() == {"outputs": rows.json()["predictions"]}


def test_grpc_predict_answers_every_output_without_an_output_filter(
    channel, two_version_base, mnist_sample
):
    images = sample_images(mnist_sample, 1)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(predict_request(images, version=1), timeout=30)
    direct = savedmodel_outputs(two_version_base, 1, images)

    assert set(response.outputs) == {"probabilities", "digit_score"}
    score = response.outputs["digit_score"]
    assert not score.tensor_content
    assert list(score.float_val) == pytest.approx(direct["digit_score"].tolist(), abs=1e-7)
    assert tf.make_ndarray(score).shape == (1,)


def test_rest_status_and_metadata_have_the_documented_shapes(rest):
    status = rest.get(MODEL).json()
    assert status == {
        "model_version_status": [
            {
                "version": v,
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in ("2", "1")
        ]
    }
    metadata = rest.get(f"{MODEL}/labels/stable/metadata").json()
    assert metadata["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["image"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (f"{MODEL}:predict", b"", 400, "JSON Parse error: The document is empty"),
        (f"{MODEL}:predict", b"{not json", 400, "JSON Parse error"),
        (f"{MODEL}:predict", b"[1, 2]", 400, "Is not object"),
        (f"{MODEL}:predict", b'{"signature_name": 3, "instances": [1]}', 400, "must be a string"),
        (f"{MODEL}:predict", b"{}", 400, "Missing 'inputs' or 'instances' key"),
        (f"{MODEL}:predict", b'{"instances": [], "inputs": []}', 400, "expecting only one of"),
        (f"{MODEL}:predict", b'{"instances": []}', 400, "No values in 'instances' array"),
        (f"{MODEL}:predict", b'{"instances": [[1, 2]]}', 400, "shape"),
        (f"{MODEL}:predict", b'{"signature_name": "x", "instances": [1]}', 400, '"x" not found'),
        (f"{MODEL}/versions/9:predict", b'{"instances": [1]}', 404, "Specific(mnist, 9)"),
        (f"{MODEL}/labels/beta:predict", b'{"instances": [1]}', 400, "version label: beta"),
        ("/v1/models/fashion:predict", b'{"instances": [1]}', 404, "Latest(fashion)"),
        (f"{MODEL}:explain", b"{}", 400, "Malformed request"),
    ],
)
def test_rest_malformed_requests_get_tf_serving_error_bodies(rest, path, body, status, message):
    assert_error(rest.post(path, content=body), status, message)


def test_rest_status_of_unknown_model_or_version_is_404(rest):
    assert_error(
        rest.get("/v1/models/fashion"), 404, "Could not find any versions of model fashion"
    )
    assert_error(rest.get(f"{MODEL}/versions/9"), 404, "Could not find version 9 of model mnist")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("NOT_FOUND", 404),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
        ("FAILED_PRECONDITION", 400),
        ("INTERNAL", 500),
    ],
)
def test_rest_maps_tf_serving_status_codes_to_http(rest, double, code, status):
    double.set_faults(fail_next=1, fail_code=code, fail_message="from the test")
    assert_error(rest.post(f"{MODEL}:predict", json={"instances": [1]}), status, "from the test")


def predict_request(images, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", "mnist")
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
    return request


def test_grpc_predict_answers_float_val_and_the_version(channel, mnist_sample):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    images = sample_images(mnist_sample, 3)
    response = stub.Predict(predict_request(images, version_label="stable"), timeout=30)

    assert response.model_spec.name == "mnist"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    output = response.outputs["probabilities"]
    assert not output.tensor_content  # Tensor::AsProtoField, as TF Serving answers
    assert len(output.float_val) == 30
    assert tf.make_ndarray(output).shape == (3, 10)


@pytest.mark.parametrize(
    ("spec", "inputs", "code", "message"),
    [
        ({"version": 9}, None, grpc.StatusCode.NOT_FOUND, "Specific(mnist, 9)"),
        ({"version_label": "beta"}, None, grpc.StatusCode.INVALID_ARGUMENT, "label: beta"),
        ({"name": "fashion"}, None, grpc.StatusCode.NOT_FOUND, "Latest(fashion)"),
        ({"signature_name": "x"}, None, grpc.StatusCode.FAILED_PRECONDITION, '"x" not found'),
        (
            {},
            {"pixels": np.zeros((1, 28, 28, 1), np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing but required: {image}",
        ),
        (
            {},
            {"image": np.zeros((1, 28, 28, 1), np.float64)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "to be float",
        ),
    ],
)
def test_grpc_errors_carry_tf_serving_status_codes(
    channel, mnist_sample, spec, inputs, code, message
):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request(sample_images(mnist_sample, 1), **spec)
    if inputs is not None:
        request.inputs.clear()
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == code
    assert message in raised.value.details()


def test_grpc_model_status_and_metadata(channel):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "mnist"}), timeout=30
    )
    assert [(v.version, v.state) for v in status.model_version_status] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
    ]
    with pytest.raises(grpc.RpcError) as raised:
        models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "fashion"}), timeout=30
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    metadata = predictions.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "mnist", "version_label": "canary"},
            metadata_field=["signature_def"],
        ),
        timeout=30,
    )
    assert metadata.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def["serving_default"].outputs) == {
        "probabilities",
        "digit_score",
    }

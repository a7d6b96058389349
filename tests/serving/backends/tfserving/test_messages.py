"""The gateway's own TF Serving messages against the official ones (tensorflow-serving-api,
in the dev environment): each is parsed by the other side exactly, both ways, for every
message and dtype the gateway uses, and the generated code is current."""

import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import any_pb2, json_format, wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving.backends.tfserving import messages as ours
from serving.backends.tfserving.messages import unpack_signature_def_map
from tests.utils.environment import REPO_ROOT

PROTOS = REPO_ROOT / "serving" / "backends" / "tfserving" / "protos"


def _fields(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _tensor(official: bool, dtype: int, values: np.ndarray, *, as_content: bool):
    module = tensor_pb2 if official else ours
    shape_module = tensor_shape_pb2 if official else ours
    proto = module.TensorProto(
        dtype=dtype,
        tensor_shape=shape_module.TensorShapeProto(
            dim=[shape_module.TensorShapeProto.Dim(size=size) for size in values.shape]
        ),
    )
    if as_content:
        proto.tensor_content = np.ascontiguousarray(values, "<f4").tobytes()
    else:
        proto.float_val.extend(values.ravel().tolist())
    return proto


def _spec(official: bool, **fields):
    spec = (model_pb2 if official else ours).ModelSpec(
        name="mnist", signature_name="serving_default"
    )
    if "version" in fields:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=fields["version"]))
    if "label" in fields:
        spec.version_label = fields["label"]
    return spec


def _predict_request(official: bool, **spec):
    module = predict_pb2 if official else ours
    request = module.PredictRequest(
        model_spec=_spec(official, **spec), output_filter=["probabilities"]
    )
    images = np.linspace(0, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    request.inputs["image"].CopyFrom(_tensor(official, 1, images, as_content=True))
    return request


def _predict_response(official: bool, *, as_content: bool):
    module = predict_pb2 if official else ours
    response = module.PredictResponse(model_spec=_spec(official, version=3))
    rows = np.full((2, 10), 0.1, np.float32)
    response.outputs["probabilities"].CopyFrom(_tensor(official, 1, rows, as_content=as_content))
    return response


def _signature_map(official: bool):
    signature_module = meta_graph_pb2 if official else ours
    shape_module = tensor_shape_pb2 if official else ours
    module = get_model_metadata_pb2 if official else ours

    def info(name: str, dims: list[int]):
        return signature_module.TensorInfo(
            name=name,
            dtype=1,
            tensor_shape=shape_module.TensorShapeProto(
                dim=[shape_module.TensorShapeProto.Dim(size=d) for d in dims]
            ),
        )

    signature = signature_module.SignatureDef(method_name="tensorflow/serving/predict")
    signature.inputs["image"].CopyFrom(info("serving_default_image:0", [-1, 28, 28, 1]))
    signature.outputs["probabilities"].CopyFrom(info("StatefulPartitionedCall:0", [-1, 10]))
    signature_map = module.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    return signature_map


def _status_response(official: bool):
    module = get_model_status_pb2 if official else ours
    response = module.GetModelStatusResponse()
    for version, state in ((1, 50), (2, 30), (3, 20)):
        status = response.model_version_status.add(version=version, state=state)
        status.status.error_message = "" if state != 50 else "unloaded"
    return response


def _metadata_request(official: bool, **spec):
    module = get_model_metadata_pb2 if official else ours
    return module.GetModelMetadataRequest(
        model_spec=_spec(official, **spec), metadata_field=["signature_def"]
    )


def _status_request(official: bool):
    module = get_model_status_pb2 if official else ours
    return module.GetModelStatusRequest(model_spec=_spec(official, label="stable"))


MESSAGES = {
    "PredictRequest, pinned version": lambda official: _predict_request(official, version=2),
    "PredictRequest, version label": lambda official: _predict_request(official, label="canary"),
    "PredictResponse, tensor_content": lambda o: _predict_response(o, as_content=True),
    "PredictResponse, float_val": lambda o: _predict_response(o, as_content=False),
    "GetModelMetadataRequest": lambda official: _metadata_request(official, label="stable"),
    "SignatureDefMap": _signature_map,
    "GetModelStatusRequest": _status_request,
    "GetModelStatusResponse": _status_response,
}


@pytest.mark.parametrize("name", MESSAGES)
@pytest.mark.parametrize("direction", ["ours -> official", "official -> ours"])
def test_each_message_reads_the_same_on_the_other_side(name, direction):
    mine, official = MESSAGES[name](False), MESSAGES[name](True)
    if direction == "ours -> official":
        parsed = type(official).FromString(mine.SerializeToString())
        assert _fields(parsed) == _fields(official)
        assert parsed.SerializeToString(deterministic=True) == official.SerializeToString(
            deterministic=True
        )
    else:
        parsed = type(mine).FromString(official.SerializeToString())
        assert _fields(parsed) == _fields(mine)
        assert parsed.SerializeToString(deterministic=True) == mine.SerializeToString(
            deterministic=True
        )


def test_metadata_packed_by_tf_serving_unpacks_into_our_signature_map():
    packed = any_pb2.Any()
    packed.Pack(_signature_map(official=True))
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=_spec(True, version=2))
    response.metadata["signature_def"].CopyFrom(packed)

    parsed = ours.GetModelMetadataResponse.FromString(response.SerializeToString())
    assert parsed.model_spec.version.value == 2
    assert _fields(unpack_signature_def_map(parsed.metadata["signature_def"])) == _fields(
        _signature_map(official=False)
    )


def test_metadata_of_another_type_is_refused():
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.Int64Value(value=1))
    with pytest.raises(ValueError, match=r"not tensorflow\.serving\.SignatureDefMap"):
        unpack_signature_def_map(packed)


def test_dtypes_and_version_states_have_tf_serving_numbers():
    for name, number in ours.DataType.items():
        assert types_pb2.DataType.Value(name) == number
    for name, number in ours.ModelVersionStatus.State.items():
        assert get_model_status_pb2.ModelVersionStatus.State.Value(name) == number


def test_fields_the_gateway_does_not_know_survive_a_round_trip():
    # A newer server may send more: parsing and re-serialising keeps every byte.
    official = predict_pb2.PredictRequest(model_spec=_spec(True, version=1), client_id=b"x")
    official.request_options.deterministic_mode = 1
    mine = ours.PredictRequest.FromString(official.SerializeToString())
    assert predict_pb2.PredictRequest.FromString(mine.SerializeToString()) == official


def test_the_generated_code_is_current(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"--python_out={tmp_path}",
            str(PROTOS / "tfserving.proto"),
        ],
        check=True,
    )
    assert (tmp_path / "tfserving_pb2.py").read_text() == (
        PROTOS / "tfserving_pb2.py"
    ).read_text(), "protos/tfserving_pb2.py is stale: run `make protos`"

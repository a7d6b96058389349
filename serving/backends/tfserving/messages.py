"""TF Serving's gRPC API without TensorFlow: the project's own wire-compatible messages
(protos/tfserving.proto) and stubs calling TF Serving's method names.

Hand-written stubs rather than generated service code: a generated service would carry
the package of our messages, and TF Serving routes by `/tensorflow.serving.<Service>/<Method>`.
"""

from google.protobuf import any_pb2
from grpc import aio

from serving.backends.tfserving.protos.tfserving_pb2 import (
    DataType,
    GetModelMetadataRequest,
    GetModelMetadataResponse,
    GetModelStatusRequest,
    GetModelStatusResponse,
    ModelSpec,
    ModelVersionStatus,
    PredictRequest,
    PredictResponse,
    SignatureDef,
    SignatureDefMap,
    TensorInfo,
    TensorProto,
    TensorShapeProto,
)

__all__ = [
    "DataType",
    "GetModelMetadataRequest",
    "GetModelMetadataResponse",
    "GetModelStatusRequest",
    "GetModelStatusResponse",
    "ModelServiceStub",
    "ModelSpec",
    "ModelVersionStatus",
    "PredictRequest",
    "PredictResponse",
    "PredictionServiceStub",
    "SignatureDef",
    "SignatureDefMap",
    "TensorInfo",
    "TensorProto",
    "TensorShapeProto",
    "unpack_signature_def_map",
]

PREDICTION_SERVICE = "/tensorflow.serving.PredictionService/"
MODEL_SERVICE = "/tensorflow.serving.ModelService/"
# How TF Serving packs the signature_def metadata into its google.protobuf.Any.
SIGNATURE_DEF_MAP_TYPE = "tensorflow.serving.SignatureDefMap"


def _method(channel: aio.Channel, path: str, request_type, response_type):
    return channel.unary_unary(
        path,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )


class PredictionServiceStub:
    def __init__(self, channel: aio.Channel) -> None:
        self.Predict = _method(
            channel, PREDICTION_SERVICE + "Predict", PredictRequest, PredictResponse
        )
        self.GetModelMetadata = _method(
            channel,
            PREDICTION_SERVICE + "GetModelMetadata",
            GetModelMetadataRequest,
            GetModelMetadataResponse,
        )


class ModelServiceStub:
    def __init__(self, channel: aio.Channel) -> None:
        self.GetModelStatus = _method(
            channel, MODEL_SERVICE + "GetModelStatus", GetModelStatusRequest, GetModelStatusResponse
        )


def unpack_signature_def_map(packed: any_pb2.Any) -> SignatureDefMap:
    """The SignatureDefMap in a metadata answer; ValueError for anything else."""
    if packed.type_url.rsplit("/", 1)[-1] != SIGNATURE_DEF_MAP_TYPE:
        raise ValueError(f"metadata of type {packed.type_url!r}, not {SIGNATURE_DEF_MAP_TYPE}")
    return SignatureDefMap.FromString(packed.value)

"""TensorFlow Serving over gRPC (`grpc.aio`, the project's own wire-compatible messages in
`messages`: no TensorFlow in the gateway).

- PredictionService.Predict: model_spec {name, signature_name, version | version_label},
  inputs {"image": float32 [n, 28, 28, 1]}, no output_filter: the answer holds every
  output of the signature, "probabilities" and, from versions that have it,
  "digit_score" (an output_filter naming digit_score fails on older versions, and which
  version answers an unpinned request is known only from the answer); its
  model_spec.version is the version that answered.
- ModelService.GetModelStatus: readiness (a version AVAILABLE).
- PredictionService.GetModelMetadata: the served signature_def, checked against the
  model contract, and the version a label points at.

Tensors are built and read straight from TensorProto bytes (`tensor_content`): no
tf.make_tensor_proto, no TensorFlow ops on the request path (bench/tfserving_codec.py
measures both).

Load balancing: with a `dns:///tfserving-headless:8500` target the resolver returns
every replica's address and the `round_robin` policy keeps a connection to each,
spreading calls over them. With `localhost:8500` (one address) the policy changes
nothing.
"""

import json
import logging
import math

import grpc
import numpy as np
from google.protobuf import json_format, wrappers_pb2
from grpc import aio

from contract import DIGIT_SCORE_KEY, INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from contract.checks import signature_problems
from serving.backends.base import BatchPrediction, ModelInfo
from serving.backends.tfserving import messages as pb
from serving.backends.tfserving.common import TFServingBackend
from serving.backends.tfserving.resilience import Deadline, RetryableUnavailable
from serving.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    ModelNotFound,
)
from serving.settings import Settings

logger = logging.getLogger(__name__)

AVAILABLE = pb.ModelVersionStatus.AVAILABLE
# Reconnect quickly after the server comes back (gRPC's default backoff grows to 120 s).
RECONNECT_BACKOFF_MS = {"initial": 200, "min": 200, "max": 2000}


def ndarray_to_tensor_proto(array: np.ndarray) -> pb.TensorProto:
    """float32 array -> TensorProto with the raw little-endian bytes in tensor_content."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return pb.TensorProto(
        dtype=pb.DataType.DT_FLOAT,
        tensor_shape=pb.TensorShapeProto(
            dim=[pb.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
        tensor_content=array.tobytes(),
    )


def tensor_proto_to_ndarray(proto: pb.TensorProto) -> np.ndarray:
    """DT_FLOAT TensorProto -> float32 array, from tensor_content or float_val.

    TF Serving answers with float_val (Tensor::AsProtoField); a repeated field shorter
    than the shape means "repeat the last value" (TensorFlow's compact encoding).
    """
    if proto.dtype != pb.DataType.DT_FLOAT:
        raise BackendError(
            f"the model answered dtype {pb.DataType.Name(proto.dtype)}, not DT_FLOAT"
        )
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    size = math.prod(shape)
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype="<f4")
    else:
        values = np.asarray(proto.float_val, dtype=np.float32)
        if 0 < values.size < size:
            values = np.pad(values, (0, size - values.size), mode="edge")
    if values.size != size:
        raise BackendError(f"tensor of shape {list(shape)} carries {values.size} values")
    return values.astype(np.float32, copy=False).reshape(shape)


def channel_options(settings: Settings) -> list[tuple[str, int | str]]:
    service_config = {"loadBalancingConfig": [{settings.tfserving_grpc_lb_policy: {}}]}
    keepalive_ms = int(settings.tfserving_grpc_keepalive_seconds * 1000)
    return [
        ("grpc.max_send_message_length", settings.tfserving_grpc_max_message_bytes),
        ("grpc.max_receive_message_length", settings.tfserving_grpc_max_message_bytes),
        # Find a dead connection (a replica gone without a FIN) while calls wait on it.
        # TF Serving must allow pings this often: see --grpc_channel_arguments in the README.
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", min(keepalive_ms, 10_000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.service_config", json.dumps(service_config)),
        # Only our service config: a DNS TXT record must not switch the policy.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["initial"]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["min"]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["max"]),
        # Retries happen in one place, serving.backends.tfserving.resilience.
        ("grpc.enable_retries", 0),
    ]


class GrpcBackend(TFServingBackend):
    kind = "grpc"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.tfserving_grpc_target)
        self._options = channel_options(settings)
        self._channel: aio.Channel | None = None

    async def start(self) -> None:
        # Connecting is lazy: a server that is down now makes readiness false, not start().
        self._channel = aio.insecure_channel(self.target, options=self._options)
        self._predictions = pb.PredictionServiceStub(self._channel)
        self._models = pb.ModelServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _model_spec(self, version: int | None = None, label: str | None = None, **kwargs):
        spec = pb.ModelSpec(name=self.model_name, **kwargs)
        if version is not None:
            spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
        elif label is not None:
            spec.version_label = label
        return spec

    def _stubs_or_raise(self):
        if self._channel is None:
            raise BackendUnavailable("the gRPC backend is not started")
        return self._predictions, self._models

    async def predict_batch(
        self,
        images: np.ndarray,
        version: int | None,
        label: str | None,
        deadline: Deadline,
    ) -> BatchPrediction:
        predictions, _ = self._stubs_or_raise()
        request = pb.PredictRequest(
            model_spec=self._model_spec(version, label, signature_name=SIGNATURE_NAME)
        )
        request.inputs[INPUT_KEY].CopyFrom(ndarray_to_tensor_proto(images))

        async def attempt(seconds_left: float) -> pb.PredictResponse:
            try:
                return await predictions.Predict(request, timeout=seconds_left)
            except aio.AioRpcError as error:
                raise self._domain_error(error, seconds_left, version, label) from None

        response = await self.call(attempt, deadline)
        if OUTPUT_KEY not in response.outputs:
            raise BackendError(f"the model's answer has no {OUTPUT_KEY!r} output")
        probabilities = tensor_proto_to_ndarray(response.outputs[OUTPUT_KEY])
        digit_scores = (
            tensor_proto_to_ndarray(response.outputs[DIGIT_SCORE_KEY])
            if DIGIT_SCORE_KEY in response.outputs
            else None
        )
        answered = (
            response.model_spec.version.value
            if response.model_spec.HasField("version")
            else version
        )
        return self.checked_answer(
            probabilities,
            digit_scores,
            str(answered) if answered is not None else "unknown",
            len(images),
        )

    async def _model_status(self, deadline: Deadline, *, retry: bool = True):
        _, models = self._stubs_or_raise()
        request = pb.GetModelStatusRequest(model_spec=self._model_spec())

        async def attempt(seconds_left: float) -> pb.GetModelStatusResponse:
            try:
                return await models.GetModelStatus(request, timeout=seconds_left)
            except aio.AioRpcError as error:
                raise self._domain_error(error, seconds_left, None, None) from None

        return await self.call(attempt, deadline, retry=retry)

    async def _metadata(
        self, deadline: Deadline, label: str | None = None
    ) -> pb.GetModelMetadataResponse:
        predictions, _ = self._stubs_or_raise()
        request = pb.GetModelMetadataRequest(
            model_spec=self._model_spec(label=label), metadata_field=["signature_def"]
        )

        async def attempt(seconds_left: float) -> pb.GetModelMetadataResponse:
            try:
                return await predictions.GetModelMetadata(request, timeout=seconds_left)
            except aio.AioRpcError as error:
                raise self._domain_error(error, seconds_left, None, label) from None

        return await self.call(attempt, deadline)

    async def any_version_available(self, deadline: Deadline) -> bool:
        status = await self._model_status(deadline, retry=False)
        return any(v.state == AVAILABLE for v in status.model_version_status)

    async def model_info(self) -> ModelInfo:
        deadline = Deadline(self.timeout_seconds)
        status = await self._model_status(deadline)
        available = sorted(v.version for v in status.model_version_status if v.state == AVAILABLE)
        if not available:
            raise BackendUnavailable(f"TF Serving has no AVAILABLE version of {self.model_name}")
        # What a request without version or label gets (the default label, when set).
        metadata = await self._metadata(deadline, self.default_label)
        signature_def_map = self._signature_def_map(metadata)
        problems = signature_problems(signature_def_map)
        if problems:
            raise BackendError("the served model breaks the contract: " + "; ".join(problems))
        version = str(metadata.model_spec.version.value)
        details = {version: self.details_of(version, signature_def_map)}
        labels = {}
        for label in self.known_labels:
            try:
                labelled = await self._metadata(deadline, label)
            except ModelNotFound:
                continue
            labels[label] = labelled_version = str(labelled.model_spec.version.value)
            if labelled_version not in details:
                details[labelled_version] = self.details_of(
                    labelled_version, self._signature_def_map(labelled)
                )
        return ModelInfo(
            name=self.model_name,
            version=version,
            available_versions=tuple(str(v) for v in available),
            version_labels=labels,
            version_details=details,
        )

    @staticmethod
    def _signature_def_map(metadata: pb.GetModelMetadataResponse) -> dict:
        """The metadata's SignatureDefMap as proto JSON (what contract.checks reads)."""
        try:
            packed = pb.unpack_signature_def_map(metadata.metadata["signature_def"])
        except ValueError as error:
            raise BackendError(f"unexpected metadata from TF Serving: {error}") from None
        return json_format.MessageToDict(packed, preserving_proto_field_name=True)

    def _domain_error(
        self,
        error: aio.AioRpcError,
        timeout: float,
        version: int | None,
        label: str | None,
    ) -> GatewayError:
        """gRPC status -> the gateway's domain error (TF Serving's codes, see README)."""
        code, details = error.code(), error.details() or ""
        where = f"TF Serving at {self.target}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return RetryableUnavailable(f"{where} is unavailable: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return BackendTimeout(f"{where} did not answer within {timeout:.2f} s: {details}")
        if code == grpc.StatusCode.NOT_FOUND:
            if version is not None or label is not None:
                return ModelNotFound(f"not served by {where}: {details}")
            return BackendUnavailable(f"{where} has no version of {self.model_name}: {details}")
        if code == grpc.StatusCode.INVALID_ARGUMENT and label is not None and "label" in details:
            return ModelNotFound(f"not served by {where}: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" not in details:
            return BackendUnavailable(f"{where} is overloaded: {details}")
        if code == grpc.StatusCode.CANCELLED:
            return RetryableUnavailable(f"{where} cancelled the call: {details}")
        return BackendError(f"{where} answered {code.name}: {details}")

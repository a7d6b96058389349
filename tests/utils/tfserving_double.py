"""A TEST DOUBLE of TensorFlow Serving's model server: not TF Serving, a stand-in for it.

The real `tensorflow_model_server` (C++) cannot run on the build machines (no Docker
engine, no binary on a reachable registry). This process speaks the same two protocols
so the gateway's grpc and rest backends are tested against the shapes and status codes
they meet in production, answering from REAL exported SavedModels:

- gRPC, from the official protos and servicer base classes of `tensorflow-serving-api`
  (tensorflow_serving/apis/prediction_service.proto, model_service.proto):
  PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus. Status
  codes and messages as TF Serving's ServerCore / predict / status code returns them:
  NOT_FOUND "Servable not found for request: Specific(mnist, 7)", INVALID_ARGUMENT
  "Unrecognized servable version label: x", FAILED_PRECONDITION for an unknown
  signature, INVALID_ARGUMENT for inputs that do not fit the signature.
- REST, as documented at https://www.tensorflow.org/tfx/serving/api_rest: the same paths
  (`/v1/models/{name}[/versions/{N}|/labels/{L}][:predict|/metadata]`), the row
  (`instances` -> `predictions`) and columnar (`inputs` -> `outputs`) formats (a
  signature with several outputs, probabilities and digit_score, answers one object per
  row, or one object of arrays, by output name; with one output, its value alone, as
  MakeJsonFromTensors writes them; gRPC answers every output unless output_filter names
  some), errors as
  `{"error": "<message>"}` with TF Serving's mapping of status to HTTP code
  (INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503,
  DEADLINE_EXCEEDED 504, FAILED_PRECONDITION 400, INTERNAL 500, UNIMPLEMENTED 501).
- Version policy: the highest version ("latest", TF Serving's default) or the versions
  given with --versions ("specific"); labels with --label NAME=VERSION; a request with
  no version is answered by the highest loaded version.

What it does not do: hot-reload of new versions, server-side batching, Classify/Regress.

Faults, for tests: run it as a subprocess (`TFServingDouble`), SIGKILL it for a crashed
server, start it again on the same ports. `POST /_double/faults` (not part of TF
Serving's API, the one path that is not) adds latency to Predict or makes the next N
Predict calls fail with a given status; `GET /_double/stats` counts Predict calls.

Run by hand: python tests/utils/tfserving_double.py --model-base EXPORT_BASE
"""

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SIGNATURE_DEFAULT = "serving_default"

# TF Serving's tensorflow::error::Code -> HTTP (model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# /v1/models/{name}[/versions/{N}|/labels/{L}]:{verb}  and  GET ...[/metadata]
PREDICT_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<sub>metadata))?",
    re.IGNORECASE,
)


class ServingError(Exception):
    """A TF Serving status: a canonical code name and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Faults:
    latency_seconds: float = 0.0
    fail_next: int = 0
    fail_code: str = "UNAVAILABLE"
    fail_message: str = "injected by the test double"
    predict_calls: int = 0
    predict_paths: dict = field(default_factory=dict)  # REST path -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_predict(self, path: str = "grpc") -> None:
        with self.lock:
            self.predict_calls += 1
            self.predict_paths[path] = self.predict_paths.get(path, 0) + 1
            latency = self.latency_seconds
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
            code, message = self.fail_code, self.fail_message
        if latency:
            time.sleep(latency)
        if failing:
            raise ServingError(code, message)


class Servable:
    """One loaded version: the SavedModel's signatures and its MetaGraphDef signature_def."""

    def __init__(self, version: int, path: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.version = version
        self.loaded = tf.saved_model.load(str(path))
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
        # TF Serving answers metadata with the whole map of the serving MetaGraphDef.
        self.signature_defs = saved_model.meta_graphs[0].signature_def
        self.warm_up()

    def warm_up(self) -> None:
        """Run each signature once before serving, as TF Serving replays the export's
        assets.extra/tf_serving_warmup_requests: the first call pays for tracing."""
        import numpy as np
        import tensorflow as tf

        for name, signature_def in self.signature_defs.items():
            if name.startswith("__"):
                continue
            inputs = {}
            for key, info in signature_def.inputs.items():
                shape = [1 if d.size == -1 else d.size for d in info.tensor_shape.dim]
                inputs[key] = np.zeros(shape, tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
            self.run(name, inputs)

    def run(self, signature_name: str, inputs: dict) -> dict:
        """Run a signature on numpy inputs; errors as TF Serving reports them."""
        import numpy as np
        import tensorflow as tf

        signature_def = self.signature_def(signature_name)
        expected = set(signature_def.inputs)
        if set(inputs) != expected:
            sent, extra = sorted(inputs), sorted(set(inputs) - expected)
            missing = sorted(expected - set(inputs))
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"len({{{','.join(sent)}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(extra)}}}. Missing but required: "
                f"{{{','.join(missing)}}}.",
            )
        function = self.loaded.signatures[signature_name]
        arguments = {}
        for key, info in signature_def.inputs.items():
            wanted = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            array = inputs[key]
            if array.dtype != wanted:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[0] to be {tf.dtypes.as_dtype(wanted).name} but "
                    f"{tf.dtypes.as_dtype(array.dtype).name} is provided",
                )
            # Checked here because a mis-shaped feed can abort the process inside
            # oneDNN; TF Serving rejects it as INVALID_ARGUMENT (message not verbatim).
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) != array.ndim or any(
                want not in (-1, got) for want, got in zip(dims, array.shape, strict=True)
            ):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"input {key!r} has shape {list(array.shape)}, the signature expects {dims}",
                )
            arguments[key] = tf.constant(array)
        try:
            outputs = function(**arguments)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            raise ServingError("INVALID_ARGUMENT", str(error).splitlines()[0]) from None
        return {key: np.asarray(value) for key, value in outputs.items()}

    def signature_def(self, signature_name: str):
        if signature_name not in self.signature_defs or signature_name.startswith("__"):
            raise ServingError(
                "FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.'
            )
        return self.signature_defs[signature_name]


class ServerCoreDouble:
    """The servables of one model, resolved the way TF Serving's ServerCore does."""

    def __init__(self, model_name: str, servables: dict[int, Servable], labels: dict[str, int]):
        self.model_name = model_name
        self.servables = servables
        self.labels = labels
        self.faults = Faults()

    def resolve(self, name: str, version: int | None, label: str | None) -> Servable:
        if label is not None:
            if name != self.model_name or label not in self.labels:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Unrecognized servable version label: {label}"
                )
            version = self.labels[label]
        if name != self.model_name or not self.servables:
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")
        if version is None:
            return self.servables[max(self.servables)]
        if version not in self.servables:
            raise ServingError(
                "NOT_FOUND", f"Servable not found for request: Specific({name}, {version})"
            )
        return self.servables[version]

    def status(self, name: str, version: int | None) -> list[int]:
        """Versions for GetModelStatus; a label in the request is ignored, as in TF Serving."""
        if version is not None:
            if name != self.model_name or version not in self.servables:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            return [version]
        if name != self.model_name or not self.servables:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        return sorted(self.servables, reverse=True)


# --- gRPC -------------------------------------------------------------------------


def _grpc_servicers(core: ServerCoreDouble):
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        status_pb2,
    )

    def spec_version(spec) -> int | None:
        return spec.version.value if spec.HasField("version") else None

    def spec_label(spec) -> str | None:
        return spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None

    def abort(context, error: ServingError):
        context.abort(getattr(grpc.StatusCode, error.code), error.message)

    def as_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
        # Tensor::AsProtoField, what TF Serving's predict answers with: values in float_val.
        # make_tensor_proto puts a one-value tensor (digit_score of one image) in float_val
        # itself: cleared too, or the value would be there twice.
        proto = tf.make_tensor_proto(array)
        proto.ClearField("tensor_content")
        if proto.dtype == types_pb2.DT_FLOAT:
            proto.ClearField("float_val")
            proto.float_val.extend(array.ravel().tolist())
        return proto

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                core.faults.on_predict()
                spec = request.model_spec
                servable = core.resolve(spec.name, spec_version(spec), spec_label(spec))
                signature_name = spec.signature_name or SIGNATURE_DEFAULT
                servable.signature_def(signature_name)
                inputs = {}
                for key, proto in request.inputs.items():
                    try:
                        inputs[key] = tf.make_ndarray(proto)
                    except (ValueError, TypeError):
                        raise ServingError(
                            "INVALID_ARGUMENT", f"tensor parsing error: {key}"
                        ) from None
                outputs = servable.run(signature_name, inputs)
                wanted = list(request.output_filter) or sorted(outputs)
                for alias in wanted:
                    if alias not in outputs:
                        raise ServingError(
                            "INVALID_ARGUMENT",
                            f"output tensor alias not found in signature: {alias}",
                        )
            except ServingError as error:
                abort(context, error)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.signature_name = signature_name
            response.model_spec.version.value = servable.version
            for alias in wanted:
                response.outputs[alias].CopyFrom(as_proto_field(outputs[alias]))
            return response

        def GetModelMetadata(self, request, context):
            try:
                if not request.metadata_field:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        "GetModelMetadataRequest must specify at least one metadata_field",
                    )
                for name in request.metadata_field:
                    if name != "signature_def":
                        raise ServingError(
                            "INVALID_ARGUMENT", f"Metadata field {name} is not supported"
                        )
                spec = request.model_spec
                servable = core.resolve(spec.name, spec_version(spec), spec_label(spec))
            except ServingError as error:
                abort(context, error)
            return metadata_response(servable, spec.name)

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            try:
                if not request.HasField("model_spec"):
                    raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
                spec = request.model_spec
                versions = core.status(spec.name, spec_version(spec))
            except ServingError as error:
                abort(context, error)
            return status_response(versions)

    def status_response(versions):
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            response.model_version_status.add(
                version=version,
                state=get_model_status_pb2.ModelVersionStatus.AVAILABLE,
                status=status_pb2.StatusProto(error_code=0, error_message=""),
            )
        return response

    def metadata_response(servable: Servable, name: str):
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=model_pb2.ModelSpec(name=name)
        )
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    return PredictionService(), ModelService(), status_response, metadata_response


# --- REST -------------------------------------------------------------------------


def format_float(value: float) -> str:
    """TF Serving's WriteDecimal: %g (6 digits) when it round-trips as float32, else %.9g."""
    import numpy as np

    text = f"{value:g}"
    if np.float32(text) != np.float32(value):
        text = f"{value:.9g}"
    if "." not in text and "e" not in text and text not in ("nan", "inf", "-inf"):
        text += ".0"
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(text, text)


def json_tensor(value) -> str:
    """A nested list of numbers as JSON, floats written the way TF Serving writes them."""
    if isinstance(value, list):
        return "[" + ", ".join(json_tensor(v) for v in value) + "]"
    if isinstance(value, float):
        return format_float(value)
    return json.dumps(value)


def rest_predict(core: ServerCoreDouble, name, version, label, body: bytes) -> str:
    """FillPredictRequestFromJson + Predict + MakeJsonFromTensors, for one model."""
    import numpy as np

    if not body:
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        offset = getattr(error, "pos", 0)
        raise ServingError(
            "INVALID_ARGUMENT", f"JSON Parse error: Invalid value. at offset: {offset}"
        ) from None
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {json.dumps(doc)} Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Value: {json.dumps(doc)[:200]} not formatted correctly. "
            "'signature_name' key must be a string value.",
        )
    servable = core.resolve(name, version, label)
    signature_name = signature_name or SIGNATURE_DEFAULT
    if signature_name not in servable.signature_defs:
        raise ServingError(
            "INVALID_ARGUMENT",
            f'Serving signature name: "{signature_name}" not found in signature def',
        )
    input_names = sorted(servable.signature_defs[signature_name].inputs)
    if "instances" in doc and "inputs" in doc:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Value: {json.dumps(doc)[:200]} Not formatted correctly expecting only one "
            "of 'inputs' or 'instances' keys to exist ",
        )
    if "instances" in doc:
        row_format = True
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {json.dumps(doc)[:200]} Excepting 'instances' to be an list/array",
            )
        if not instances:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {json.dumps(doc)[:200]} No values in 'instances' array",
            )
        if isinstance(instances[0], dict):
            columns = {key: [item.get(key) for item in instances] for key in input_names}
        elif len(input_names) > 1:
            raise ServingError(
                "INVALID_ARGUMENT",
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map",
            )
        else:
            columns = {input_names[0]: instances}
    elif "inputs" in doc:
        row_format = False
        given = doc["inputs"]
        if isinstance(given, dict):
            for key in input_names:
                if key not in given:
                    raise ServingError(
                        "INVALID_ARGUMENT", f"Missing named input: {key} in 'inputs' object."
                    )
            columns = {key: given[key] for key in input_names}
        else:
            columns = {input_names[0]: given}
    else:
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")

    import tensorflow as tf

    arrays = {}
    for key, values in columns.items():
        dtype = tf.dtypes.as_dtype(servable.signature_defs[signature_name].inputs[key].dtype)
        try:
            array = np.array(values, dtype=np.float64)
        except (ValueError, TypeError):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
                f"JSON Value is not of expected type: {dtype.name} or the lists are ragged",
            ) from None
        if dtype.is_floating and np.isfinite(array).all() and np.abs(array).max(initial=0) > 3.4e38:
            raise ServingError(
                "INVALID_ARGUMENT", f"Cannot convert JSON value to {dtype.name} without loss"
            )
        arrays[key] = array.astype(dtype.as_numpy_dtype)
    outputs = servable.run(signature_name, arrays)
    if len(outputs) == 1:
        (only,) = outputs.values()
        payload = json_tensor(only.tolist())
    elif row_format:
        rows = [
            "{"
            + ", ".join(
                f"{json.dumps(k)}: {json_tensor(v[i].tolist())}" for k, v in outputs.items()
            )
            + "}"
            for i in range(len(next(iter(outputs.values()))))
        ]
        payload = "[" + ", ".join(rows) + "]"
    else:
        payload = (
            "{"
            + ", ".join(f"{json.dumps(k)}: {json_tensor(v.tolist())}" for k, v in outputs.items())
            + "}"
        )
    key = "predictions" if row_format else "outputs"
    return f'{{\n    "{key}": {payload}\n}}'


def make_rest_handler(core: ServerCoreDouble, status_response, metadata_response):
    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY every keep-alive
        # answer waits ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body() if method == "POST" else b""
            if path.startswith("/_double/"):
                return self._control(method, path, body)
            if not path.lower().startswith("/v1/"):
                return self._reply(404, "")
            try:
                self._reply(200, self._dispatch(method, path, body))
            except ServingError as error:
                self._reply(HTTP_STATUS[error.code], json.dumps({"error": error.message}))
            except Exception as error:  # what the real server reports as INTERNAL
                self._reply(500, json.dumps({"error": f"{type(error).__name__}: {error}"}))

        def _dispatch(self, method: str, path: str, body: bytes) -> str:
            malformed = ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
            if method == "POST":
                match = PREDICT_PATH.fullmatch(path)
                if not match:
                    raise malformed
                if match["verb"].lower() != "predict":
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Expected classification signature method_name to be "
                        f"tensorflow/serving/{match['verb'].lower()}",
                    )
                version = int(match["version"]) if match["version"] else None
                core.faults.on_predict(path)
                return rest_predict(core, match["name"], version, match["label"], body)
            match = STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            if not match["name"]:
                raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
            version = int(match["version"]) if match["version"] else None
            options = {"always_print_fields_with_no_presence": True}
            if match["sub"]:
                servable = core.resolve(match["name"], version, match["label"])
                response = metadata_response(servable, match["name"])
                from tensorflow_serving.apis import get_model_metadata_pb2

                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return json.dumps(
                    {
                        "model_spec": json_format.MessageToDict(
                            response.model_spec, preserving_proto_field_name=True, **options
                        ),
                        "metadata": {
                            "signature_def": json_format.MessageToDict(
                                signature_map, preserving_proto_field_name=True, **options
                            )
                        },
                    },
                    indent=1,
                )
            response = status_response(core.status(match["name"], version))
            return json_format.MessageToJson(response, **options)

        def _control(self, method: str, path: str, body: bytes) -> None:
            faults = core.faults
            if method == "POST" and path == "/_double/faults":
                settings = json.loads(body or b"{}")
                with faults.lock:
                    for key in ("latency_seconds", "fail_next", "fail_code", "fail_message"):
                        if key in settings:
                            setattr(faults, key, settings[key])
                return self._reply(200, "{}")
            if method == "GET" and path == "/_double/stats":
                with faults.lock:
                    stats = {"predict_calls": faults.predict_calls, "paths": faults.predict_paths}
                    return self._reply(200, json.dumps(stats))
            return self._reply(404, "")

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


def serve(args: argparse.Namespace) -> None:
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    model_dir = Path(args.model_base) / args.model_name
    found = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    wanted = [int(v) for v in args.versions.split(",")] if args.versions else found[-1:]
    labels = dict((k, int(v)) for k, v in (item.split("=", 1) for item in args.label))
    servables = {version: Servable(version, model_dir / str(version)) for version in wanted}
    core = ServerCoreDouble(args.model_name, servables, labels)

    prediction, model, status_response, metadata_response = _grpc_servicers(core)
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
            # As the README's --grpc_channel_arguments: accept the gateway's keepalive pings.
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"{args.host}:{args.grpc_port}")
    if grpc_port == 0:
        raise SystemExit(f"cannot bind gRPC port {args.grpc_port}")
    grpc_server.start()

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    rest_server = ThreadingHTTPServer(
        (args.host, args.rest_port), make_rest_handler(core, status_response, metadata_response)
    )
    threading.Thread(target=rest_server.serve_forever, daemon=True).start()
    print(
        json.dumps({"grpc_port": grpc_port, "rest_port": rest_server.server_address[1]}),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_exit_with_parent, args=(stop,), daemon=True).start()
    stop.wait()
    rest_server.shutdown()
    grpc_server.stop(grace=1).wait()


def _exit_with_parent(stop: threading.Event) -> None:
    """A test run that dies (or is interrupted) must not leave its double behind."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


# --- Harness: the double as a subprocess ----------------------------------------


class TFServingDouble:
    """Start, kill (SIGKILL) and restart the double on the same ports."""

    START_TIMEOUT_SECONDS = 120

    def __init__(
        self,
        model_base: Path,
        *,
        model_name: str = "mnist",
        versions: list[int] | None = None,
        labels: dict[str, int] | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
    ) -> None:
        self.model_base = Path(model_base)
        self.host = host
        self.model_name = model_name
        self.versions = versions
        self.labels = labels or {}
        self.grpc_port = grpc_port
        self.rest_port = 0
        self.process: subprocess.Popen | None = None

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def start(self) -> "TFServingDouble":
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--model-base",
            str(self.model_base),
            "--model-name",
            self.model_name,
            "--host",
            self.host,
            "--grpc-port",
            str(self.grpc_port),
            "--rest-port",
            str(self.rest_port),
        ]
        if self.versions:
            command += ["--versions", ",".join(str(v) for v in self.versions)]
        for label, version in self.labels.items():
            command += ["--label", f"{label}={version}"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        ready, _, _ = select.select([self.process.stdout], [], [], self.START_TIMEOUT_SECONDS)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=10)
            raise RuntimeError(f"the TF Serving double did not start:\n{stderr[-3000:]}")
        ports = json.loads(line)
        self.grpc_port, self.rest_port = ports["grpc_port"], ports["rest_port"]
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as a crashed or evicted pod does."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def set_faults(self, **faults) -> None:
        import httpx

        httpx.post(f"{self.rest_url}/_double/faults", json=faults, timeout=5).raise_for_status()

    def stats(self) -> dict:
        import httpx

        return httpx.get(f"{self.rest_url}/_double/stats", timeout=5).json()

    def predict_calls(self) -> int:
        return self.stats()["predict_calls"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", required=True, help="export base holding NAME/<version>/")
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument("--versions", default="", help="comma-separated; default: the latest")
    parser.add_argument("--label", action="append", default=[], help="LABEL=VERSION")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--rest-port", type=int, default=0)
    serve(parser.parse_args())


if __name__ == "__main__":
    main()

"""The grpc backend on its own: the TensorProto codec, channel options, chunking, load
balancing over replicas, and a server that is down. Servers are the TF Serving test
double (tests/utils/tfserving_double.py); behaviour shared with rest is in
test_tfserving_gateway.py."""

import json

import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from contract.checks import signature_problems
from serving.backends.tfserving.grpc import (
    channel_options,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
)
from serving.backends.tfserving.resilience import Deadline
from serving.errors import BackendError, BackendUnavailable
from serving.settings import Settings
from tests.utils.gateway_process import GatewayProcess, free_port
from tests.utils.imagefiles import png
from tests.utils.models import sample_images
from tests.utils.tfserving import LABELS, make_backend, tfserving_settings
from tests.utils.tfserving_double import TFServingDouble


def test_request_tensor_carries_the_raw_float32_bytes_tensorflow_reads():
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    proto = ndarray_to_tensor_proto(images)

    assert proto.tensor_content == images.astype("<f4").tobytes()
    assert not proto.float_val
    np.testing.assert_array_equal(tf.make_ndarray(proto), images)


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(1).random((4, 10), dtype=np.float32),
        np.full((2, 10), 0.1, dtype=np.float32),  # TensorFlow's compact repeated encoding
    ],
)
def test_answer_tensors_decode_from_float_val_and_tensor_content(array):
    with_content = tf.make_tensor_proto(array)
    as_fields = tf.make_tensor_proto(array)
    as_fields.ClearField("tensor_content")
    as_fields.float_val.extend(array.ravel().tolist())
    compact = tf.make_tensor_proto(array)
    if len(set(array.ravel().tolist())) == 1:
        compact.ClearField("tensor_content")
        compact.float_val[:] = [array.ravel()[0]]

    for proto in (with_content, as_fields, compact):
        np.testing.assert_array_equal(tensor_proto_to_ndarray(proto), array)


def test_answer_tensor_of_another_dtype_is_a_backend_error():
    with pytest.raises(BackendError, match="DT_DOUBLE"):
        tensor_proto_to_ndarray(tf.make_tensor_proto(np.zeros((1, 10), np.float64)))


def test_channel_options_set_message_limits_keepalive_and_balancing():
    settings = Settings(
        tfserving_grpc_max_message_bytes=8 * 1024 * 1024,
        tfserving_grpc_keepalive_seconds=20,
        tfserving_grpc_lb_policy="pick_first",
    )
    options = dict(channel_options(settings))

    assert options["grpc.max_send_message_length"] == 8 * 1024 * 1024
    assert options["grpc.max_receive_message_length"] == 8 * 1024 * 1024
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert json.loads(options["grpc.service_config"]) == {
        "loadBalancingConfig": [{"pick_first": {}}]
    }
    assert options["grpc.enable_retries"] == 0


async def test_batches_larger_than_the_server_limit_go_in_chunks_pinned_to_one_version(
    double, two_version_base, mnist_sample
):
    images = sample_images(mnist_sample, 10)
    settings = tfserving_settings("grpc", double, two_version_base, tfserving_max_batch_size=4)
    chunked, whole = (
        make_backend("grpc", settings),
        make_backend("grpc", tfserving_settings("grpc", double, two_version_base)),
    )
    await chunked.start()
    await whole.start()
    try:
        calls_before = double.predict_calls()
        in_chunks = await chunked.predict(images)
        assert double.predict_calls() - calls_before == 3  # 4 + 4 + 2
        at_once = await whole.predict(images)
    finally:
        await chunked.close()
        await whole.close()

    assert in_chunks.model_version == at_once.model_version == "2"
    np.testing.assert_allclose(in_chunks.probabilities, at_once.probabilities, atol=1e-6)


async def test_message_size_limit_is_the_configured_one_not_grpc_default(
    double, two_version_base, mnist_sample
):
    # 1,500 images are 4.7 MB on the wire: over gRPC's 4 MiB client default.
    images = np.resize(sample_images(mnist_sample, 100), (1500, 28, 28, 1))
    big = {"tfserving_max_batch_size": 4096, "backend_timeout_seconds": 30}
    roomy = make_backend("grpc", tfserving_settings("grpc", double, two_version_base, **big))
    tight = make_backend(
        "grpc",
        tfserving_settings(
            "grpc",
            double,
            two_version_base,
            tfserving_grpc_max_message_bytes=4 * 1024 * 1024,
            **big,
        ),
    )
    await roomy.start()
    await tight.start()
    try:
        answer = await roomy.predict(images)
        assert answer.probabilities.shape == (1500, 10)
        with pytest.raises(BackendError, match="larger than max"):
            await tight.predict(images)
    finally:
        await roomy.close()
        await tight.close()


async def test_server_down_means_not_ready_and_503_and_start_still_succeeds(two_version_base):
    down = f"127.0.0.1:{free_port()}"
    backend = make_backend("grpc", Settings(backend="grpc", tfserving_grpc_target=down))
    await backend.start()  # connecting is lazy: a dead server does not stop the gateway
    try:
        assert await backend.ready() is False
        with pytest.raises(BackendUnavailable) as raised:
            await backend.predict(np.zeros((1, 28, 28, 1), np.float32))
        assert raised.value.headers["Retry-After"] == "1"
        with pytest.raises(BackendUnavailable):
            await backend.model_info()
    finally:
        await backend.close()


async def test_model_info_checks_the_served_signature_against_the_contract(
    double, two_version_base
):
    backend = make_backend("grpc", tfserving_settings("grpc", double, two_version_base))
    await backend.start()
    try:
        metadata = await backend._metadata(Deadline(5))
    finally:
        await backend.close()
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    served = json_format.MessageToDict(signature_map, preserving_proto_field_name=True)
    assert signature_problems(served) == []

    renamed = json.loads(json.dumps(served))
    outputs = renamed["signature_def"]["serving_default"]["outputs"]
    outputs["output_0"] = outputs.pop("probabilities")  # Keras' model.export() naming
    assert signature_problems(renamed) == [
        "outputs has no 'probabilities' (it has ['digit_score', 'output_0'])"
    ]


@pytest.fixture
def two_replicas(two_version_base):
    """Two doubles on the same port of two loopback addresses, like two pods behind DNS."""
    first = TFServingDouble(two_version_base, versions=[1, 2], labels=LABELS).start()
    second = TFServingDouble(
        two_version_base,
        versions=[1, 2],
        labels=LABELS,
        host="127.0.0.2",
        grpc_port=first.grpc_port,
    )
    try:
        second.start()
        yield first, second
    finally:
        first.kill()
        second.kill()


@pytest.mark.parametrize(("policy", "both_used"), [("round_robin", True), ("pick_first", False)])
async def test_load_balancing_policy_spreads_calls_over_replicas(
    policy, both_used, two_replicas, mnist_sample
):
    first, second = two_replicas
    # What a dns:/// target resolves to for a headless Service: several addresses.
    target = f"ipv4:127.0.0.1:{first.grpc_port},127.0.0.2:{second.grpc_port}"
    backend = make_backend(
        "grpc",
        Settings(backend="grpc", tfserving_grpc_target=target, tfserving_grpc_lb_policy=policy),
    )
    await backend.start()
    try:
        for _ in range(20):
            await backend.predict(sample_images(mnist_sample, 1))
    finally:
        await backend.close()

    calls = (first.predict_calls(), second.predict_calls())
    assert sum(calls) == 20
    assert (min(calls) > 0) is both_used, calls


def test_launched_gateway_with_two_workers_follows_the_server_down_and_back(
    private_double, mnist_sample, tmp_path
):
    """`python -m serving` configured by GATEWAY_ variables, two uvicorn workers (each with
    its own channel and circuit), TF Serving killed and restarted under it."""
    gateway = GatewayProcess(
        {
            "GATEWAY_BACKEND": "grpc",
            "GATEWAY_TFSERVING_GRPC_TARGET": private_double.grpc_target,
            "GATEWAY_WORKERS": "2",
            "GATEWAY_BREAKER_RESET_SECONDS": "1",
        },
        tmp_path / "gateway.log",
    )
    upload = {"file": ("seven.png", png(mnist_sample["x_test"][0]), "image/png")}
    # Two workers share the port: several answers in a row, so both are seen.
    both_workers = {"timeout": 90, "streak": 4}
    try:
        gateway.wait_for("/readyz", 200, **both_workers)
        answer = httpx.post(gateway.url + "/v1/predict", files=upload, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["model"] == {"name": "mnist", "version": "2"}

        private_double.kill()
        gateway.wait_for("/readyz", 503, **both_workers)
        assert gateway.status("POST", "/v1/predict", files=upload) == 503
        assert gateway.process.poll() is None  # the gateway outlives its model server

        private_double.start()
        gateway.wait_for("/v1/predict", 200, method="POST", files=upload, **both_workers)
        assert gateway.status("GET", "/readyz") == 200
    finally:
        gateway.stop()

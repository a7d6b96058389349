"""What the TF Serving backends spend per call on the gateway side, measured in one run.

1. Encoding a batch for the wire: gRPC TensorProto with raw bytes in tensor_content (what
   serving/backends/tfserving/grpc.py does) vs tf.make_tensor_proto vs REST's JSON (the
   columnar body serving/backends/tfserving/rest.py sends).
2. Decoding the answer: float_val (TF Serving's answer) with numpy vs tf.make_ndarray, and
   REST's JSON (probabilities and digit_score, columnar, as rest.py reads it).
3. Importing the official protos (a fresh interpreter: they import TensorFlow).

    python bench/tfserving_codec.py

Times are medians of repeated runs on this machine; compare rows within one run.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BATCH_SIZES = (1, 32, 128)


def median_ms(function, repeat: int = 30) -> float:
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def import_seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    import tensorflow as tf

    from serving.backends.tfserving.grpc import ndarray_to_tensor_proto, tensor_proto_to_ndarray
    from serving.backends.tfserving.rest import decode_outputs, encode_inputs

    rng = np.random.default_rng(0)
    # Real digits: mostly background zeros, which JSON writes short ("0.0").
    with np.load(Path(__file__).resolve().parent.parent / "data" / "mnist-sample.npz") as data:
        digits = (data["x_test"][..., None] / 255.0).astype(np.float32)
    print("encode a batch of MNIST test digits, float32 [n, 28, 28, 1] (median ms; bytes)")
    print(
        f"{'n':>5} {'tensor_content':>15} {'make_tensor_proto':>18} {'REST JSON':>10} "
        f"{'JSON/proto time':>16} {'proto bytes':>12} {'JSON bytes':>11}"
    )
    for n in BATCH_SIZES:
        images = digits[:n]
        ours = median_ms(lambda images=images: ndarray_to_tensor_proto(images).SerializeToString())
        tfs = median_ms(lambda images=images: tf.make_tensor_proto(images).SerializeToString())

        def rest(images=images):
            return encode_inputs(images)

        rest_ms = median_ms(rest)
        proto_bytes = len(ndarray_to_tensor_proto(images).SerializeToString())
        json_bytes = len(rest())
        print(
            f"{n:>5} {ours:>15.3f} {tfs:>18.3f} {rest_ms:>10.3f} {rest_ms / ours:>16.0f} "
            f"{proto_bytes:>12} {json_bytes:>11}"
        )

    print("\ndecode an answer of float32 [n, 10] and, REST, digit_score [n] (median ms)")
    print(f"{'n':>5} {'float_val+numpy':>16} {'tf.make_ndarray':>16} {'REST JSON':>10}")
    for n in BATCH_SIZES:
        probabilities = rng.random((n, 10), dtype=np.float32)
        proto = tf.make_tensor_proto(probabilities)
        proto.ClearField("tensor_content")
        proto.float_val.extend(probabilities.ravel().tolist())  # as TF Serving answers
        scores = rng.random(n, dtype=np.float32).tolist()
        text = json.dumps(
            {"outputs": {"probabilities": probabilities.tolist(), "digit_score": scores}}
        )
        ours = median_ms(lambda proto=proto: tensor_proto_to_ndarray(proto))
        tfs = median_ms(lambda proto=proto: tf.make_ndarray(proto))
        rest = median_ms(lambda text=text: decode_outputs(json.loads(text)))
        print(f"{n:>5} {ours:>16.3f} {tfs:>16.3f} {rest:>10.3f}")

    print("\nimport in a fresh interpreter (seconds, one run each)")
    for label, statement in (
        ("grpc + httpx", "import grpc, httpx"),
        ("tensorflow_serving.apis.predict_pb2", "from tensorflow_serving.apis import predict_pb2"),
        ("serving.backends.tfserving.grpc", "import serving.backends.tfserving.grpc"),
    ):
        print(f"  {label:<40} {import_seconds(statement):6.2f}")


if __name__ == "__main__":
    main()

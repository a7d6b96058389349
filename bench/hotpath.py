"""CPU per request of the gateway's request path, in this process, without HTTP or a load
generator: where the server's own time goes.

    .venv/bin/python bench/hotpath.py               # the table (~1 minute)
    .venv/bin/python bench/hotpath.py --profile     # and the top of a cProfile

Calls each ASGI app directly (no socket, no uvicorn: what every row pays for HTTP is not
in these figures), one 28x28 PNG per request, in waves of `--concurrency` requests, and
divides the process's CPU time (`time.process_time`, TensorFlow's threads included) by
the requests answered. The rows take turns for `--rounds` rounds and each shows its
median, so a noisy neighbour on the machine moves all rows alike:
- the trivial upload route of bench/baselines.py (FastAPI reading the multipart part);
- the gateway as served (real model, dynamic batching);
- the gateway with the model replaced by a stub answering at once;
- the same with decoding and preprocessing replaced by a ready tensor too: what is left
  is the gateway's HTTP-framework side (routing, multipart, middleware, metrics, the log
  line, the JSON answer).
The differences between the last three rows are the model's and decode + preprocess's
shares. Not a test: numbers depend on the machine; compare rows within one run.
"""

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from bench.model import build_bench_model  # noqa: E402
from client.payloads import load_digits, multipart_body, png_bytes  # noqa: E402
from contract import INPUT_SHAPE, NUM_CLASSES  # noqa: E402
from serving.backends.base import DEFAULT_MODEL, Backend, BatchPrediction, ModelInfo  # noqa: E402


class InstantBackend(Backend):
    """Answers every image with the same probabilities, at once: the model's cost removed."""

    kind = "instant"

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1", available_versions=("1",))

    async def predict(self, images, selector=DEFAULT_MODEL) -> BatchPrediction:
        probabilities = np.full((len(images), NUM_CLASSES), 1 / NUM_CLASSES, np.float32)
        return BatchPrediction(probabilities=probabilities, model_version="1")


def asgi_post(path: str, body: bytes, content_type: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }


async def call(app, path: str, body: bytes, content_type: str) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(asgi_post(path, body, content_type), receive, send)
    return status


async def cpu_per_request(app, path, body, *, requests, concurrency) -> float:
    """Microseconds of process CPU per answered request."""
    start = time.process_time()
    done = 0
    while done < requests:
        waves = (call(app, path, body.data, body.content_type) for _ in range(concurrency))
        statuses = await asyncio.gather(*waves)
        if set(statuses) != {200}:
            raise SystemExit(f"{path} answered {statuses}")
        done += concurrency
    return (time.process_time() - start) / done * 1e6


@contextlib.contextmanager
def without_preprocessing():
    """The predict route's decode + preprocess replaced by a ready tensor."""
    from serving.api.routes import predict

    real = predict.prepare_images
    ready = np.zeros((1, *INPUT_SHAPE), np.float32)
    predict.prepare_images = lambda uploads, max_pixels, metrics: ready
    try:
        yield
    finally:
        predict.prepare_images = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1024, help="per row and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="cProfile the served gateway")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from bench.baselines import build_app
    from serving.app import create_app
    from serving.settings import Settings

    export_base, keras_path = build_bench_model(args.workdir)
    digits, _ = load_digits(count=1)
    body = multipart_body([("digit.png", png_bytes(digits[0]), "image/png")])
    settings = Settings(model_base_path=export_base / "mnist")
    trivial = build_app(export_base / "mnist" / "1", keras_path)
    gateway = create_app(settings)
    instant = create_app(settings, backend=InstantBackend())
    rows = {
        "trivial upload route": (trivial, "/upload", contextlib.nullcontext),
        "gateway /v1/predict, as served": (gateway, "/v1/predict", contextlib.nullcontext),
        "  model replaced by an instant stub": (instant, "/v1/predict", contextlib.nullcontext),
        "  ... and decode + preprocess by a ready tensor": (
            instant,
            "/v1/predict",
            without_preprocessing,
        ),
    }

    async def run() -> dict[str, list[float]]:
        figures: dict[str, list[float]] = {label: [] for label in rows}
        async with (
            gateway.router.lifespan_context(gateway),
            instant.router.lifespan_context(instant),
        ):
            for app, path, patch in rows.values():  # warm-up: first calls, caches, batches
                with patch():
                    await cpu_per_request(app, path, body, requests=256, concurrency=32)
            for _ in range(args.rounds):
                for label, (app, path, patch) in rows.items():
                    with patch():
                        figures[label].append(
                            await cpu_per_request(
                                app,
                                path,
                                body,
                                requests=args.requests,
                                concurrency=args.concurrency,
                            )
                        )
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await cpu_per_request(
                    gateway, "/v1/predict", body, requests=args.requests, concurrency=32
                )
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
                print(out.getvalue())
        return figures

    figures = asyncio.run(run())
    medians = {label: statistics.median(values) for label, values in figures.items()}
    served = medians["gateway /v1/predict, as served"]
    print(f"one 28x28 PNG a request, c={args.concurrency}, median of {args.rounds} rounds\n")
    print(f"| {'what':<48} | CPU us / request | of the gateway's | rounds |")
    print(f"| {'-' * 48} | ---: | ---: | --- |")
    for label, values in figures.items():
        share = f"{medians[label] / served:.0%}" if label != "trivial upload route" else ""
        spread = ", ".join(f"{value:.0f}" for value in values)
        print(f"| {label:<48} | {medians[label]:.0f} | {share} | {spread} |")
    model = served - medians["  model replaced by an instant stub"]
    preprocessing = (
        medians["  model replaced by an instant stub"]
        - medians["  ... and decode + preprocess by a ready tensor"]
    )
    print(
        f"\nmodel (batched) ~{model:.0f} us, decode + preprocess ~{preprocessing:.0f} us, "
        f"the rest ~{medians['  ... and decode + preprocess by a ready tensor']:.0f} us; "
        f"the gateway / the trivial route = {served / medians['trivial upload route']:.2f}x"
    )


if __name__ == "__main__":
    main()

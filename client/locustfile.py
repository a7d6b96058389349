"""Load test of the gateway with a realistic mix of uploads.

    locust -f client/locustfile.py --headless -u 32 -r 8 -t 30s --host http://127.0.0.1:8000

Each simulated user picks, by weight: one 28x28 MNIST PNG; a phone-sized JPEG photo of a
digit (dark ink on shaded, noisy paper); a batch of 8 PNGs; a base64 JSON request; a
written number of 2-6 digits to POST /v1/read; or, a small share of the time, a malformed
upload. Well-formed requests succeed only with a 200 that holds one prediction (reading)
per image, a reading one segment or more; bad uploads (named "bad upload: ...") succeed only
with a 4xx — a 2xx or a 5xx for them is a failure. Bodies are generated from the committed
MNIST sample when the test starts (no network) and pre-encoded, so the load generator
spends its CPU on sending.

Options: --think-time S (each user waits up to S seconds between requests; default 0 =
back-to-back) and --mnist-sample PATH (default data/mnist-sample.npz).
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from locust import FastHttpUser, between, constant, events, task

from client.payloads import (
    BAD_UPLOAD_PREFIX,
    SAMPLE_PATH,
    Body,
    bad_uploads,
    base64_json_body,
    compose_number,
    load_digits,
    multipart_body,
    photo_jpeg,
    png_bytes,
)

PREDICT_PATH = "/v1/predict"
READ_PATH = "/v1/read"
PHOTO_SIZE = (1280, 960)


@dataclass(frozen=True)
class Payloads:
    single_pngs: list[Body]
    photos: list[Body]
    batches_of_8: list[Body]
    base64_requests: list[Body]
    numbers: list[Body]
    bad: list[Body]


def build_payloads(sample_path: Path, seed: int = 0) -> Payloads:
    rng = np.random.default_rng(seed)
    digits, _ = load_digits(sample_path, count=128)
    pngs = [png_bytes(digit) for digit in digits]
    photos = [photo_jpeg(digit, rng, PHOTO_SIZE) for digit in digits[:8]]
    return Payloads(
        single_pngs=[
            multipart_body([(f"d{i}.png", png, "image/png")]) for i, png in enumerate(pngs)
        ],
        photos=[
            multipart_body([(f"photo{i}.jpg", jpg, "image/jpeg")]) for i, jpg in enumerate(photos)
        ],
        batches_of_8=[
            multipart_body([(f"b{i + j}.png", pngs[i + j], "image/png") for j in range(8)])
            for i in range(0, 64, 8)
        ],
        base64_requests=[base64_json_body(pngs[i : i + 1 + i % 2]) for i in range(32)],
        numbers=[
            multipart_body([(f"number{i}.png", _number_png(digits, rng), "image/png")])
            for i in range(16)
        ],
        bad=bad_uploads(pngs[0], photos[0]),
    )


def _number_png(digits: np.ndarray, rng: np.random.Generator) -> bytes:
    chosen = digits[rng.integers(0, len(digits), int(rng.integers(2, 7)))]
    gaps = [int(gap) for gap in rng.integers(4, 30, len(chosen) - 1)]
    number = compose_number(list(chosen), height=int(rng.integers(40, 100)), gaps=gaps, rng=rng)
    return png_bytes(number.image)


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    parser.add_argument(
        "--think-time", type=float, default=0.0, help="max seconds between requests"
    )
    parser.add_argument("--mnist-sample", default=str(SAMPLE_PATH), help="MNIST npz to draw from")


@events.init.add_listener
def _build_payloads(environment, **_kwargs) -> None:
    options = environment.parsed_options
    sample = Path(options.mnist_sample) if options else SAMPLE_PATH
    environment.mnist_payloads = build_payloads(sample)
    think = options.think_time if options else 0.0
    GatewayUser.wait_time = between(0, think) if think > 0 else constant(0)


class GatewayUser(FastHttpUser):
    wait_time = constant(0)

    @property
    def payloads(self) -> Payloads:
        return self.environment.mnist_payloads

    def _predict(self, name: str, body: Body, path: str = PREDICT_PATH) -> None:
        with self.client.post(
            path,
            data=body.data,
            headers={"Content-Type": body.content_type},
            name=name,
            catch_response=True,
        ) as response:
            check = _check_reading if path == READ_PATH else _check_prediction
            problem = check(response.status_code, response.text, body.images)
            if problem:
                response.failure(problem)
            else:
                response.success()

    @task(45)
    def single_png(self) -> None:
        self._predict("png 28x28", random.choice(self.payloads.single_pngs))

    @task(10)
    def phone_photo(self) -> None:
        self._predict("jpeg photo 1280x960", random.choice(self.payloads.photos))

    @task(15)
    def batch_of_8(self) -> None:
        self._predict("batch of 8 png", random.choice(self.payloads.batches_of_8))

    @task(15)
    def base64_json(self) -> None:
        self._predict("base64 json", random.choice(self.payloads.base64_requests))

    @task(10)
    def read_number(self) -> None:
        self._predict("read number", random.choice(self.payloads.numbers), READ_PATH)

    @task(5)
    def bad_upload(self) -> None:
        body = random.choice(self.payloads.bad)
        with self.client.post(
            PREDICT_PATH,
            data=body.data,
            headers={"Content-Type": body.content_type},
            name=BAD_UPLOAD_PREFIX + body.name,
            catch_response=True,
        ) as response:
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"expected a 4xx, got {response.status_code}")


def _check_prediction(status: int, text: str | None, images: int) -> str | None:
    """Why a well-formed request's answer is wrong, or None when it is right."""
    if status != 200:
        return f"status {status}: {(text or '')[:200]}"
    try:
        predictions = json.loads(text or "")["predictions"]
    except (ValueError, KeyError, TypeError):
        return "200 without a predictions list"
    if len(predictions) != images:
        return f"{len(predictions)} predictions for {images} images"
    for prediction in predictions:
        if (
            prediction.get("digit") not in range(10)
            or len(prediction.get("probabilities", ())) != 10
        ):
            return f"malformed prediction {prediction}"
    return None


def _check_reading(status: int, text: str | None, images: int) -> str | None:
    """Why a read request's answer is wrong, or None when it is right."""
    if status != 200:
        return f"status {status}: {(text or '')[:200]}"
    try:
        readings = json.loads(text or "")["readings"]
    except (ValueError, KeyError, TypeError):
        return "200 without a readings list"
    if len(readings) != images:
        return f"{len(readings)} readings for {images} images"
    for reading in readings:
        digits = reading.get("digits") or []
        if not digits or not isinstance(reading.get("text"), str):
            return f"malformed reading {reading}"
    return None

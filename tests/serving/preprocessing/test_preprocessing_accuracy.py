"""Behavioural tests: uploads that do not look like MNIST are classified as well as MNIST.

One model trained well enough for accuracy to mean something (`well_trained_model_base`:
the full MNIST when MNIST_NPZ is set, else the committed sample); the same 1,000 test
digits are classified from raw arrays straight into the SavedModel signature, and as
uploads through the real app in each presentation a user might send.
"""

import os
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from client.payloads import photo_jpeg
from contract import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from serving.app import create_app
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import (
    dark_on_white,
    encode,
    exif_rotated_jpeg,
    png,
    small_off_centre,
    transparent_canvas,
)

DIGITS = 1000


@pytest.fixture(scope="module")
def test_digits(mnist_sample) -> tuple[np.ndarray, np.ndarray]:
    full = os.environ.get("MNIST_NPZ")
    if full:
        with np.load(full) as data:
            return data["x_test"][:DIGITS], data["y_test"][:DIGITS]
    return mnist_sample["x_test"][:DIGITS], mnist_sample["y_test"][:DIGITS]


@pytest.fixture(scope="module")
def raw_accuracy(well_trained_model_base, test_digits) -> float:
    import tensorflow as tf

    images, labels = test_digits
    model = tf.saved_model.load(str(well_trained_model_base / "mnist" / "1"))
    batch = tf.constant((images[..., None] / 255.0).astype(np.float32))
    outputs = model.signatures[SIGNATURE_NAME](**{INPUT_KEY: batch})[OUTPUT_KEY].numpy()
    return float(np.mean(outputs.argmax(axis=1) == labels))


@pytest.fixture(scope="module")
def upload_accuracy(well_trained_model_base, test_digits) -> Callable[[Callable], float]:
    app = create_app(gateway_settings(well_trained_model_base))
    images, labels = test_digits
    with TestClient(app) as client:
        limit = app.state.settings.max_files_per_request

        def accuracy(present: Callable[[np.ndarray], bytes]) -> float:
            predicted = []
            for start in range(0, len(images), limit):
                files = [
                    ("file", (f"{start + i}", present(image)))
                    for i, image in enumerate(images[start : start + limit])
                ]
                response = client.post("/v1/predict", files=files)
                assert response.status_code == 200, response.text
                predicted += [p["digit"] for p in response.json()["predictions"]]
            return float(np.mean(np.array(predicted) == labels))

        yield accuracy


def test_the_model_is_good_enough_for_these_figures_to_mean_something(raw_accuracy):
    assert raw_accuracy >= 0.93


def test_mnist_digits_uploaded_as_png_score_as_the_raw_arrays(raw_accuracy, upload_accuracy):
    assert upload_accuracy(png) == pytest.approx(raw_accuracy, abs=0.002)


def test_dark_ink_on_white_scores_within_one_point(raw_accuracy, upload_accuracy):
    assert upload_accuracy(lambda d: png(dark_on_white(d))) >= raw_accuracy - 0.01


def test_small_off_centre_on_a_200px_canvas_scores_within_one_point(raw_accuracy, upload_accuracy):
    assert upload_accuracy(lambda d: png(small_off_centre(d))) >= raw_accuracy - 0.01


def test_transparent_canvas_drawings_score_within_one_point(raw_accuracy, upload_accuracy):
    assert upload_accuracy(lambda d: encode(transparent_canvas(d))) >= raw_accuracy - 0.01


def test_jpeg_quality_70_scores_within_one_point(raw_accuracy, upload_accuracy):
    def jpeg(digit: np.ndarray) -> bytes:
        photo = Image.fromarray(dark_on_white(digit)).resize((112, 112), Image.Resampling.BICUBIC)
        return encode(photo, "JPEG", quality=70)

    assert upload_accuracy(jpeg) >= raw_accuracy - 0.01


def test_exif_rotated_jpegs_score_within_one_point(raw_accuracy, upload_accuracy):
    assert upload_accuracy(lambda d: exif_rotated_jpeg(dark_on_white(d))) >= raw_accuracy - 0.01


@pytest.mark.parametrize("light_ink", [False, True], ids=["pen on paper", "chalk on a board"])
def test_photos_with_the_digit_small_anywhere_score_within_two_points(
    raw_accuracy, upload_accuracy, light_ink
):
    """640x480 phone photos (client.payloads.photo_jpeg): the digit 10-25% of the frame's
    height anywhere in it, turned by up to 8 degrees, light falling off across the frame,
    blur, grain, JPEG. Measured: the seed convnet trained on the committed sample loses
    1.9 points on chalk (it never saw a turned digit); bench/preprocessing.py --photos
    gives the default model's figures."""
    rng = np.random.default_rng(11)

    def photo(digit: np.ndarray) -> bytes:
        return photo_jpeg(digit, rng, (640, 480), fraction=(0.1, 0.25), light_ink=light_ink)

    assert upload_accuracy(photo) >= raw_accuracy - 0.02


def _page(digit: np.ndarray, *, corner: bool, light_from: float) -> bytes:
    """Dark ink on a 1600x1200 page; the light falls from 1 to `light_from` left to
    right; the digit 12% of the height, in the top-left corner or in the middle."""
    width, height = 1600, 1200
    side = round(0.12 * height * 28 / 20)
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    inked = np.zeros((height, width), np.float32)
    top, left = (15, 15) if corner else ((height - side) // 2, (width - side) // 2)
    inked[top : top + side, left : left + side] = glyph / 255.0
    light = np.linspace(1.0, light_from, width, dtype=np.float32)[None, :]
    gray = light * (230 - 180 * inked) + np.random.default_rng(0).normal(0, 3, (height, width))
    return encode(Image.fromarray(gray.clip(0, 255).astype(np.uint8)), "JPEG", quality=85)


def test_a_digit_small_in_a_corner_and_one_under_strong_shading_are_read_right(
    well_trained_model_base, test_digits
):
    images, labels = test_digits
    app = create_app(gateway_settings(well_trained_model_base))
    with TestClient(app) as client:

        def read(uploads: list[bytes]) -> list[int]:
            files = [("file", (f"{i}.jpg", data)) for i, data in enumerate(uploads)]
            response = client.post("/v1/predict", files=files)
            assert response.status_code == 200, response.text
            return [p["digit"] for p in response.json()["predictions"]]

        scanned = np.array(read([png(image) for image in images[:20]]))
        readable = scanned == labels[:20]  # what the model reads right as a clean scan
        in_corner = np.array(read([_page(d, corner=True, light_from=0.8) for d in images[:20]]))
        shaded = np.array(read([_page(d, corner=False, light_from=0.35) for d in images[:20]]))
    assert readable.sum() >= 18
    assert (in_corner == labels[:20])[readable].all()
    assert (shaded == labels[:20])[readable].all()

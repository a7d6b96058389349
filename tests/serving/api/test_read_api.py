"""POST /v1/read through HTTP: numbers read left to right on every backend, boxes in the
uploaded image's pixels, marks left out of the text, and the errors of /v1/predict."""

import base64
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from client.payloads import compose_number
from serving.app import create_app
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import bomb_png, encode, png
from tests.utils.tfserving import tfserving_settings
from tests.utils.tfserving_double import TFServingDouble

BACKENDS = ["embedded", "grpc", "rest"]


@pytest.fixture(scope="module")
def double(well_trained_model_base) -> Iterator[TFServingDouble]:
    served = TFServingDouble(well_trained_model_base, versions=[1]).start()
    yield served
    served.kill()


@pytest.fixture(scope="module", params=BACKENDS)
def reader(request, well_trained_model_base, double) -> Iterator[TestClient]:
    """The gateway on the well-trained model, embedded or through TF Serving."""
    if request.param == "embedded":
        settings = gateway_settings(well_trained_model_base)
    else:
        settings = tfserving_settings(request.param, double, well_trained_model_base)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def readable(mnist_sample, well_trained_model_base) -> dict[int, list[np.ndarray]]:
    """Sample test digits by label, those the model reads right one at a time (a reading
    of several cannot be better than its digits)."""
    x_test, y_test = mnist_sample["x_test"][:64], mnist_sample["y_test"][:64]
    with TestClient(create_app(gateway_settings(well_trained_model_base))) as client:
        files = [("file", (f"{i}.png", png(digit))) for i, digit in enumerate(x_test)]
        answers = client.post("/v1/predict", files=files).json()["predictions"]
    by_label: dict[int, list[np.ndarray]] = {}
    for digit, label, answer in zip(x_test, y_test, answers, strict=True):
        if answer["digit"] == label and answer["is_digit"]:
            by_label.setdefault(int(label), []).append(digit)
    return by_label


def _read(client: TestClient, *images: bytes, query: str = "") -> dict:
    files = [("file", (f"number-{i}.png", data)) for i, data in enumerate(images)]
    response = client.post("/v1/read" + query, files=files)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_written_2024_reads_2024_on_every_backend(reader, readable):
    digits = [readable[2][0], readable[0][0], readable[2][1], readable[4][0]]
    number = compose_number(digits, gaps=[12, 18, 10])
    answer = _read(reader, encode(Image.fromarray(number.image)))
    assert answer["model"]["version"] == "1"
    (reading,) = answer["readings"]
    assert reading["filename"] == "number-0.png"
    assert reading["text"] == "2024"
    assert [digit["digit"] for digit in reading["digits"]] == [2, 0, 2, 4]
    assert all(digit["is_digit"] for digit in reading["digits"])
    confidences = [digit["confidence"] for digit in reading["digits"]]
    assert reading["confidence"] == pytest.approx(np.prod(confidences), abs=1e-5)
    for digit, (x, y, width, height) in zip(reading["digits"], number.boxes, strict=True):
        box = digit["box"]
        assert abs(box["x"] - x) <= 3
        assert abs(box["y"] - y) <= 3
        assert abs(box["width"] - width) <= 4
        assert abs(box["height"] - height) <= 4
        assert len(digit["probabilities"]) == 10
        assert sum(digit["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_readings_come_in_upload_order_each_as_predict_reads_its_digits(reader, readable):
    first = compose_number([readable[7][0], readable[3][0]])
    second = compose_number([readable[9][0], readable[1][0], readable[5][0]])
    answer = _read(
        reader, encode(Image.fromarray(first.image)), encode(Image.fromarray(second.image))
    )
    assert [reading["text"] for reading in answer["readings"]] == ["73", "915"]
    assert [reading["filename"] for reading in answer["readings"]] == [
        "number-0.png",
        "number-1.png",
    ]


def test_boxes_are_in_the_uploaded_pixels_of_a_large_photo(reader, readable):
    number = compose_number([readable[6][0], readable[8][0]], height=300, margin=200)
    data = encode(Image.fromarray(number.image).convert("RGB"), "JPEG", quality=90)
    (reading,) = _read(reader, data)["readings"]
    assert reading["text"] == "68"
    for digit, (x, y, width, height) in zip(reading["digits"], number.boxes, strict=True):
        box = digit["box"]
        assert abs(box["x"] - x) <= 12
        assert abs(box["y"] - y) <= 12
        assert abs(box["width"] - width) <= 16
        assert abs(box["height"] - height) <= 16


def test_a_broken_5_is_one_digit_and_touching_digits_are_two(client, readable):
    five = readable[5][0].copy()
    rows = np.flatnonzero(five.max(axis=1) > 60)
    five[rows[0] + 4 : rows[0] + 6] = 0  # a gap under the top bar: two strokes
    (broken,) = _read(client, encode(Image.fromarray(255 - five).resize((112, 112))))["readings"]
    assert len(broken["digits"]) == 1
    touching = compose_number([readable[0][0], readable[3][0]], gaps=[-3])
    (pair,) = _read(client, encode(Image.fromarray(touching.image)))["readings"]
    assert len(pair["digits"]) == 2
    left, right = (digit["box"] for digit in pair["digits"])
    assert left["x"] + left["width"] <= right["x"] + 6  # side by side, not one over the other


def test_a_dash_between_digits_is_listed_but_not_in_the_text(reader, readable):
    number = compose_number([readable[1][0], readable[2][0], readable[3][0]], gaps=[14, 70])
    page = Image.fromarray(number.image)
    (x, y, width, height), (next_x, _, _, _) = number.boxes[1], number.boxes[2]
    ImageDraw.Draw(page).line(
        [(x + width + 20, y + height // 2), (next_x - 20, y + height // 2)], fill=0, width=7
    )
    (reading,) = _read(reader, encode(page))["readings"]
    assert reading["text"] == "123"
    assert [digit["is_digit"] for digit in reading["digits"]] == [True, True, False, True]
    dash = reading["digits"][2]["box"]
    assert x + width + 14 <= dash["x"]
    assert dash["x"] + dash["width"] <= next_x - 14


def test_read_is_documented_with_its_errors(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/read"]["post"]
    responses = operation["responses"]
    assert {"200", "400", "404", "413", "415", "422", "500", "502", "503", "504"} <= set(responses)
    assert "too_many_segments" in responses["422"]["description"]
    assert "no_ink" in responses["422"]["description"]
    limits = client.get("/v1/models").json()["limits"]
    assert limits["max_digits_per_image"] == client.app.state.settings.max_digits_per_image


def _bad_requests(good: bytes) -> dict[str, dict]:
    blank = encode(Image.new("L", (64, 64), 255))
    return {
        "empty part": {"files": {"file": ("e.png", b"")}},
        "not an image": {"files": {"file": ("n.png", b"hello, not a picture")}},
        "truncated": {"files": {"file": ("t.png", good[: len(good) * 2 // 3])}},
        "no ink": {"files": [("file", ("ok.png", good)), ("file", ("blank.png", blank))]},
        "unsupported format": {"files": {"file": ("d.ppm", encode(Image.new("L", (9, 9)), "PPM"))}},
        "decompression bomb": {"files": {"file": ("bomb.png", bomb_png(100_000, 100_000))}},
        "bad base64": {"json": {"images": ["not base64 at all!"]}},
        "no files": {"files": {"image": ("d.png", good)}},
        "text body": {"content": good, "headers": {"Content-Type": "text/plain"}},
        "bad version": {"files": {"file": ("ok.png", good)}, "params": {"version": "0"}},
        "unknown version": {"files": {"file": ("ok.png", good)}, "params": {"version": "9"}},
    }


@pytest.mark.parametrize("case", list(_bad_requests(b"").keys()))
def test_bad_input_gets_the_same_error_as_predict(client, mnist_sample, case):
    request = _bad_requests(png(mnist_sample["x_test"][0]))[case]
    predicted = client.post("/v1/predict", **request)
    read = client.post("/v1/read", **request)
    assert predicted.status_code >= 400
    assert read.status_code == predicted.status_code, read.text
    assert read.json()["error"]["code"] == predicted.json()["error"]["code"]
    assert read.json()["error"]["message"] == predicted.json()["error"]["message"]
    assert (
        client.post(
            "/v1/read", files={"file": ("ok.png", png(mnist_sample["x_test"][0]))}
        ).status_code
        == 200
    )


def test_an_image_of_more_segments_than_allowed_is_refused_with_the_limit(client, mnist_sample):
    page = np.full((60, 40 * 12), 255, np.uint8)
    for column in range(40):
        page[15:45, 4 + 12 * column : 8 + 12 * column] = 0
    response = client.post(
        "/v1/read", files={"file": ("strokes.png", encode(Image.fromarray(page)))}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "too_many_segments"
    assert "image 1 ('strokes.png')" in error["message"]
    assert "32" in error["message"]


def test_json_base64_uploads_are_read_too(client, mnist_sample):
    number = compose_number([mnist_sample["x_test"][0], mnist_sample["x_test"][1]])
    encoded = base64.b64encode(encode(Image.fromarray(number.image))).decode()
    response = client.post("/v1/read", json={"images": [encoded]})
    assert response.status_code == 200, response.text
    (reading,) = response.json()["readings"]
    assert reading["filename"] is None
    assert len(reading["digits"]) == 2

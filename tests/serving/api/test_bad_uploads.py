"""Every bad input answers its DESIGN.md status with the one error shape, and the worker
keeps serving: each case is followed by a good request on the same app."""

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.app import create_app
from serving.backends.base import Backend, BatchPrediction, ModelInfo
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import bomb_png, encode, png

ERROR_KEYS = {"code", "message", "request_id"}


@pytest.fixture(scope="module")
def good_png(mnist_sample) -> bytes:
    return png(mnist_sample["x_test"][0])


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    return body["error"]


def assert_still_serving(client, good_png: bytes) -> None:
    response = client.post("/v1/predict", files={"file": ("good.png", good_png)})
    assert response.status_code == 200


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _photo_like(mnist_sample) -> Image.Image:
    return Image.fromarray(255 - mnist_sample["x_test"][1]).resize((280, 280))


def test_predict_rejects_an_empty_part(client, good_png):
    error = assert_error(
        client.post("/v1/predict", files={"file": ("e.png", b"")}), 400, "bad_image"
    )
    assert "empty" in error["message"]
    assert "'e.png'" in error["message"]
    assert_still_serving(client, good_png)


def test_predict_rejects_bytes_that_are_not_an_image(client, good_png):
    response = client.post("/v1/predict", files={"file": ("notes.png", b"hello, not a picture")})
    assert_error(response, 400, "bad_image")
    assert_still_serving(client, good_png)


def test_predict_rejects_truncated_png(client, good_png, mnist_sample):
    data = _truncated(encode(_photo_like(mnist_sample), "PNG"))
    error = assert_error(
        client.post("/v1/predict", files={"file": ("t.png", data)}), 400, "bad_image"
    )
    assert "truncated" in error["message"]
    assert_still_serving(client, good_png)


def test_predict_rejects_truncated_jpeg(client, good_png, mnist_sample):
    data = _truncated(encode(_photo_like(mnist_sample), "JPEG", quality=90))
    response = client.post("/v1/predict", files={"file": ("t.jpg", data)})
    assert_error(response, 400, "bad_image")
    assert_still_serving(client, good_png)


def test_predict_names_the_bad_image_in_a_batch(client, good_png):
    files = [("file", ("good.png", good_png)), ("file", ("broken.png", b"\x89PNG\r\n\x1a\nxx"))]
    error = assert_error(client.post("/v1/predict", files=files), 400, "bad_image")
    assert error["message"].startswith("image 2 ('broken.png')")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"]
)
def test_predict_rejects_a_body_that_is_neither_multipart_nor_json(client, good_png, content_type):
    response = client.post("/v1/predict", content=good_png, headers={"Content-Type": content_type})
    assert_error(response, 415, "unsupported_media_type")
    assert_still_serving(client, good_png)


def test_predict_rejects_a_body_without_content_type(client, good_png):
    response = client.post("/v1/predict", content=good_png)
    assert "content-type" not in {k.lower() for k in response.request.headers}
    assert_error(response, 415, "unsupported_media_type")
    assert_still_serving(client, good_png)


def test_predict_rejects_a_part_declared_as_a_non_image_type(client, good_png):
    response = client.post("/v1/predict", files={"file": ("doc.txt", good_png, "text/plain")})
    assert_error(response, 415, "unsupported_media_type")
    assert_still_serving(client, good_png)


def test_predict_rejects_an_image_format_outside_the_supported_list(client, good_png, mnist_sample):
    data = encode(Image.fromarray(mnist_sample["x_test"][0]), "PPM")
    error = assert_error(
        client.post("/v1/predict", files={"file": ("d.ppm", data)}), 415, "unsupported_media_type"
    )
    assert "PPM" in error["message"]
    assert_still_serving(client, good_png)


def test_predict_rejects_a_decompression_bomb_before_decoding_it(client, good_png):
    bomb = bomb_png()
    assert len(bomb) < 2000  # 10 billion pixels claimed by a file of a few hundred bytes
    error = assert_error(
        client.post("/v1/predict", files={"file": ("bomb.png", bomb)}), 413, "payload_too_large"
    )
    assert "pixels" in error["message"]
    assert_still_serving(client, good_png)


def test_predict_rejects_an_image_just_over_the_pixel_limit(client, good_png):
    limit = client.app.state.settings.max_image_pixels
    bomb = bomb_png(width=limit // 1000 + 1, height=1000)
    response = client.post("/v1/predict", files={"file": ("wide.png", bomb)})
    assert_error(response, 413, "payload_too_large")


def test_predict_rejects_a_body_over_the_byte_limit_by_its_content_length(client, good_png):
    limit = client.app.state.settings.max_request_bytes
    big = b"\0" * (limit + 1)
    response = client.post("/v1/predict", files={"file": ("big.png", big)})
    assert_error(response, 413, "payload_too_large")
    assert_still_serving(client, good_png)


def test_predict_counts_body_bytes_when_content_length_is_absent(client, good_png):
    limit = client.app.state.settings.max_request_bytes
    boundary = "b0undary"
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode(),
        *([b"\0" * 65536] * (limit // 65536 + 2)),
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    response = client.post(
        "/v1/predict",
        content=iter(chunks),  # a generator: sent chunked, no Content-Length header
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")
    assert_still_serving(client, good_png)


def test_predict_rejects_a_json_body_over_the_byte_limit(client, good_png):
    limit = client.app.state.settings.max_request_bytes
    payload = {"images": [base64.b64encode(b"\0" * limit).decode()]}
    response = client.post("/v1/predict", json=payload)
    assert_error(response, 413, "payload_too_large")


def test_predict_rejects_too_many_files(client, good_png):
    limit = client.app.state.settings.max_files_per_request
    files = [("file", (f"{i}.png", good_png)) for i in range(limit + 1)]
    error = assert_error(client.post("/v1/predict", files=files), 413, "payload_too_large")
    assert str(limit) in error["message"]
    assert_still_serving(client, good_png)


def test_predict_accepts_exactly_the_file_limit(client, good_png):
    limit = client.app.state.settings.max_files_per_request
    files = [("file", (f"{i}.png", good_png)) for i in range(limit)]
    response = client.post("/v1/predict", files=files)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == limit


def test_predict_rejects_too_many_json_images(client, good_png):
    limit = client.app.state.settings.max_files_per_request
    encoded = base64.b64encode(good_png).decode()
    response = client.post("/v1/predict", json={"images": [encoded] * (limit + 1)})
    assert_error(response, 413, "payload_too_large")


def test_predict_rejects_non_base64_json(client, good_png):
    ok = base64.b64encode(good_png).decode()
    response = client.post("/v1/predict", json={"images": [ok, "not base64 at all!"]})
    error = assert_error(response, 422, "invalid_request")
    assert "image 2" in error["message"]
    assert_still_serving(client, good_png)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"images": []}', b"[]", b'{"images": "abc"}', b"{not json", b'{"images": [1]}'],
    ids=["empty", "empty-object", "no-images", "array", "string", "not-json", "number"],
)
def test_predict_rejects_empty_or_malformed_json(client, good_png, body):
    response = client.post(
        "/v1/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")
    assert_still_serving(client, good_png)


def test_predict_rejects_a_multipart_body_without_files(client, good_png):
    # A part without a filename is a plain form field, not an upload.
    response = client.post("/v1/predict", files={"file": (None, "just text")})
    assert_error(response, 422, "invalid_request")
    response = client.post("/v1/predict", files={"image": ("d.png", good_png)})
    error = assert_error(response, 422, "invalid_request")
    assert "'image'" in error["message"]


def test_predict_rejects_malformed_multipart(client, good_png):
    response = client.post(
        "/v1/predict", content=b"garbage", headers={"Content-Type": "multipart/form-data"}
    )
    assert_error(response, 422, "invalid_request")
    assert_still_serving(client, good_png)


@pytest.mark.parametrize("value", [0, 255, 128])
def test_predict_rejects_a_uniform_image_as_no_ink(client, good_png, value):
    blank = encode(Image.new("L", (64, 64), value), "PNG")
    error = assert_error(
        client.post("/v1/predict", files={"file": ("blank.png", blank)}), 422, "no_ink"
    )
    assert "no digit" in error["message"]
    assert_still_serving(client, good_png)


def test_predict_rejects_a_blank_jpeg_photo_with_compression_noise_as_no_ink(client):
    rng = np.random.default_rng(0)
    paper = (235 + rng.normal(0, 2, (300, 300))).clip(0, 255).astype(np.uint8)
    blank = encode(Image.fromarray(paper), "JPEG", quality=70)
    response = client.post("/v1/predict", files={"file": ("paper.jpg", blank)})
    assert_error(response, 422, "no_ink")


class BrokenBackend(Backend):
    """Test double for the one thing no real input can trigger: a bug in a backend."""

    kind = "broken-double"

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1")

    async def predict(self, images, selector=None) -> BatchPrediction:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_answers_500_in_the_same_shape_without_details(
    tiny_model_base, good_png, caplog
):
    app = create_app(gateway_settings(tiny_model_base), backend=BrokenBackend())
    with TestClient(app, raise_server_exceptions=False) as broken:
        response = broken.post("/v1/predict", files={"file": ("d.png", good_png)})
        error = assert_error(response, 500, "internal_error")
        assert "secret" not in response.text
        assert broken.get("/healthz").status_code == 200
    assert "secret internal detail" in caplog.text  # the operator does get it
    assert error["request_id"] in caplog.text

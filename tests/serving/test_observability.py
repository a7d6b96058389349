"""/metrics after real traffic: what an operator's dashboards rely on."""

import re

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import png


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (labels in any order)."""
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line) or re.match(rf"^{name} (\S+)$", line)
        if not match:
            continue
        if len(match.groups()) == 1:
            if not labels:
                return float(match.group(1))
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels}")


@pytest.fixture(scope="module")
def traffic(client, mnist_sample):
    """Known traffic: 3 predictions of two images each, one bad upload, one 404."""
    images = mnist_sample["x_test"][:2]
    files = [("file", (f"{i}.png", png(image))) for i, image in enumerate(images)]
    digits = []
    for _ in range(3):
        digits += [
            p["digit"] for p in client.post("/v1/predict", files=files).json()["predictions"]
        ]
    client.post("/v1/predict", files={"file": ("bad.png", b"nope")})
    client.get("/no/such/path")
    return digits


def test_metrics_count_requests_by_route_and_status(client, traffic):
    text = client.get("/metrics").text
    route = "/v1/predict"
    assert sample(text, "gateway_http_requests_total", route=route, status="200") >= 3
    assert sample(text, "gateway_http_requests_total", route=route, status="400") >= 1
    assert sample(text, "gateway_http_requests_total", route="unmatched", status="404") >= 1
    assert sample(text, "gateway_http_request_duration_seconds_count", route=route) >= 4


def test_metrics_time_each_stage(client, traffic):
    text = client.get("/metrics").text
    assert sample(text, "gateway_stage_duration_seconds_count", stage="decode") >= 7
    assert sample(text, "gateway_stage_duration_seconds_count", stage="preprocess") >= 6
    assert sample(text, "gateway_stage_duration_seconds_count", stage="model") >= 3
    assert sample(text, "gateway_stage_duration_seconds_sum", stage="model") > 0


def test_metrics_count_predictions_by_digit_and_report_the_model_version(client, traffic):
    text = client.get("/metrics").text
    for digit in set(traffic):
        count = sample(text, "gateway_predictions_total", digit=str(digit), model_version="1")
        assert count >= traffic.count(digit)
    assert sample(text, "gateway_model_version") == 1.0


def test_metrics_are_prometheus_text_format(client, traffic):
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE gateway_http_request_duration_seconds histogram" in response.text


def test_metrics_count_images_per_model_call_of_the_batcher(tiny_model_base, mnist_sample):
    files = [
        ("file", (f"{i}.png", png(image))) for i, image in enumerate(mnist_sample["x_test"][:2])
    ]
    app = create_app(gateway_settings(tiny_model_base, batching_enabled=True))
    with TestClient(app) as batching_client:
        for _ in range(3):  # one after another: each request is a batch of its two images
            assert batching_client.post("/v1/predict", files=files).status_code == 200
        text = batching_client.get("/metrics").text
    assert sample(text, "gateway_batch_images_count") == 3
    assert sample(text, "gateway_batch_images_sum") == 6
    assert sample(text, "gateway_batch_images_bucket", le="1.0") == 0
    assert sample(text, "gateway_batch_images_bucket", le="2.0") == 3


def test_without_batching_no_batch_sizes_are_reported(client, traffic):
    assert sample(client.get("/metrics").text, "gateway_batch_images_count") == 0

"""/metrics after known traffic on a fresh app: what an operator's dashboards rely on."""

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from tests.utils.gateway_setup import gateway_settings
from tests.utils.imagefiles import png

PREDICT = "/v1/predict"


def _matching(text: str, name: str, labels: dict[str, str]):
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                yield found


def samples(text: str, name: str, **labels: str) -> dict[tuple, float]:
    """Every sample called `name` whose labels include `labels`, keyed by its other
    labels' values in name order (so `{("POST", "200"): 3.0}`)."""
    return {
        tuple(v for k, v in sorted(found.labels.items()) if k not in labels): found.value
        for found in _matching(text, name, labels)
    }


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample called `name` with these labels."""
    [value] = samples(text, name, **labels).values()
    return value


def buckets(text: str, name: str, **labels: str) -> dict[str, float]:
    """A histogram's cumulative counts by upper bound ("0.005", "+Inf"), in order."""
    return {found.labels["le"]: found.value for found in _matching(text, f"{name}_bucket", labels)}


@pytest.fixture(scope="module")
def images(mnist_sample):
    two = mnist_sample["x_test"][:2]
    return [("file", (f"{i}.png", png(image))) for i, image in enumerate(two)]


@pytest.fixture(scope="module")
def after_traffic(tiny_model_base, images):
    """A fresh app, then known traffic: 3 predictions of two images each, one upload
    that is not an image, one unknown path; the first scrape after it (a scrape is
    counted once it is answered, so not in itself), the digits predicted and their
    confidences."""
    app = create_app(gateway_settings(tiny_model_base))
    with TestClient(app, raise_server_exceptions=False) as client:
        digits, confidences = [], []
        for _ in range(3):
            response = client.post(PREDICT, files=images)
            assert response.status_code == 200
            digits += [p["digit"] for p in response.json()["predictions"]]
            confidences += [p["confidence"] for p in response.json()["predictions"]]
        assert client.post(PREDICT, files={"file": ("bad.png", b"nope")}).status_code == 400
        assert client.get("/no/such/path").status_code == 404
        response = client.get("/metrics")
    return response, digits, confidences


def test_metrics_count_requests_by_route_and_status(after_traffic):
    text = after_traffic[0].text
    assert samples(text, "gateway_http_requests_total") == {
        ("POST", PREDICT, "200"): 3,
        ("POST", PREDICT, "400"): 1,
        ("GET", "unmatched", "404"): 1,
    }
    assert samples(text, "gateway_http_request_duration_seconds_count") == {
        ("POST", PREDICT): 4,
        ("GET", "unmatched"): 1,
    }
    latency = buckets(text, "gateway_http_request_duration_seconds", route=PREDICT)
    assert latency["+Inf"] == 4


def test_metrics_time_each_stage(after_traffic):
    text = after_traffic[0].text
    # Decode and preprocess once per image that gets that far (the six real ones; the
    # upload that is not an image stops at its header), the model once per request.
    assert samples(text, "gateway_stage_duration_seconds_count") == {
        ("decode",): 6,
        ("preprocess",): 6,
        ("model",): 3,
    }
    for stage, count in (("decode", 6), ("preprocess", 6), ("model", 3)):
        cumulative = list(buckets(text, "gateway_stage_duration_seconds", stage=stage).values())
        assert cumulative == sorted(cumulative)
        assert cumulative[-1] == count
    # Each stage runs inside its request, so its time is part of the request's time.
    stage_seconds = sum(samples(text, "gateway_stage_duration_seconds_sum").values())
    request_seconds = sample(text, "gateway_http_request_duration_seconds_sum", route=PREDICT)
    assert 0 < stage_seconds < request_seconds


def test_metrics_count_predictions_by_digit_and_report_the_model_version(after_traffic):
    text, digits = after_traffic[0].text, after_traffic[1]
    assert len(digits) == 6
    assert samples(text, "gateway_predictions_total", model_version="1") == {
        (str(digit),): count for digit, count in Counter(digits).items()
    }
    assert samples(text, "gateway_predictions_total").keys() == {
        (str(digit), "1") for digit in digits
    }
    assert sample(text, "gateway_model_version") == 1


def test_metrics_histogram_the_confidence_of_every_image_by_model_version(after_traffic):
    text, confidences = after_traffic[0].text, after_traffic[2]
    assert sample(text, "gateway_prediction_confidence_count", model_version="1") == 6
    total = sample(text, "gateway_prediction_confidence_sum", model_version="1")
    assert total == pytest.approx(sum(confidences), abs=1e-5)
    cumulative = buckets(text, "gateway_prediction_confidence", model_version="1")
    assert list(cumulative) == ["0.5", "0.7", "0.8", "0.9", "0.95", "0.99", "0.999", "1.0", "+Inf"]
    for bound, count in cumulative.items():
        assert count == sum(c <= float(bound) + 5e-7 for c in confidences), bound


def test_metrics_are_prometheus_text_format(after_traffic):
    response = after_traffic[0]
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE gateway_http_request_duration_seconds histogram" in response.text


def test_without_batching_no_batch_sizes_are_reported(after_traffic):
    assert sample(after_traffic[0].text, "gateway_batch_images_count") == 0


def test_metrics_count_images_per_model_call_of_the_batcher(tiny_model_base, images):
    app = create_app(gateway_settings(tiny_model_base, batching_enabled=True))
    with TestClient(app) as batching_client:
        for _ in range(3):  # one after another: each request is a batch of its two images
            assert batching_client.post(PREDICT, files=images).status_code == 200
        text = batching_client.get("/metrics").text
    assert sample(text, "gateway_batch_images_count") == 3
    assert sample(text, "gateway_batch_images_sum") == 6
    sizes = buckets(text, "gateway_batch_images")
    assert (sizes["1.0"], sizes["2.0"], sizes["+Inf"]) == (0, 3, 3)

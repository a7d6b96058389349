"""The real gateway app with GATEWAY_BACKEND=grpc and =rest against the TF Serving test
double (tests/utils/tfserving_double.py), which answers from the real exported SavedModels.

Every test runs once per protocol. Uploads are real PNGs; the expected answers come from
the embedded backend reading the same export.
"""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from tests.utils.imagefiles import png
from tests.utils.tfserving import tfserving_settings

KINDS = ["grpc", "rest"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def embedded(two_version_base) -> Iterator[TestClient]:
    settings = Settings(model_base_path=two_version_base / "mnist", batching_enabled=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def gateway(kind, double, model_base, **overrides) -> TestClient:
    settings = tfserving_settings(kind, double, model_base, **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def digit_files(mnist_sample) -> list[tuple[str, bytes]]:
    """One upload per class, the first test image of each digit."""
    files = []
    for digit in range(10):
        index = int(next(i for i, y in enumerate(mnist_sample["y_test"]) if y == digit))
        files.append((f"digit-{digit}.png", png(mnist_sample["x_test"][index])))
    return files


def multipart(files):
    return [("file", (name, data, "image/png")) for name, data in files]


def assert_same_predictions(answer: dict, expected: dict) -> None:
    assert len(answer["predictions"]) == len(expected["predictions"])
    for got, want in zip(answer["predictions"], expected["predictions"], strict=True):
        assert got["filename"] == want["filename"]
        assert got["digit"] == want["digit"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=TOLERANCE)
        assert got["digit_score"] == pytest.approx(want["digit_score"], abs=TOLERANCE)
        assert got["is_digit"] is want["is_digit"]


@pytest.mark.parametrize("kind", KINDS)
def test_gateway_answers_the_same_probabilities_and_digit_scores_as_the_embedded_backend(
    kind, double, two_version_base, embedded, digit_files
):
    expected = embedded.post("/v1/predict", files=multipart(digit_files)).json()
    with gateway(kind, double, two_version_base) as client:
        response = client.post("/v1/predict", files=multipart(digit_files))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == {"name": "mnist", "version": "2"} == expected["model"]
    assert_same_predictions(answer, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_version_and_label_choose_the_model_that_answers(
    kind, double, two_version_base, digit_files
):
    files = multipart(digit_files)
    with gateway(kind, double, two_version_base) as client:
        default = client.post("/v1/predict", files=files).json()
        version_1 = client.post("/v1/predict?version=1", files=files).json()
        stable = client.post("/v1/predict?label=stable", files=files).json()
        canary = client.post("/v1/predict?label=canary", files=files).json()

    assert version_1["model"]["version"] == stable["model"]["version"] == "1"
    assert default["model"]["version"] == canary["model"]["version"] == "2"
    assert_same_predictions(stable, version_1)
    assert_same_predictions(canary, default)
    # The two versions are different models: the choice changed who answered.
    assert any(
        v1["probabilities"] != pytest.approx(v2["probabilities"], abs=1e-3)
        for v1, v2 in zip(version_1["predictions"], default["predictions"], strict=True)
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("query", ["version=7", "label=nope"])
def test_unknown_version_or_label_is_404(kind, query, double, two_version_base, digit_files):
    with gateway(kind, double, two_version_base) as client:
        response = client.post(f"/v1/predict?{query}", files=multipart(digit_files[:1]))

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "7" in error["message"] or "nope" in error["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_models_endpoint_and_readiness_come_from_the_model_server(kind, double, two_version_base):
    with gateway(kind, double, two_version_base) as client:
        models = client.get("/v1/models")
        ready = client.get("/readyz")

    assert models.status_code == 200, models.text
    body = models.json()
    assert body["backend"] == kind
    assert body["version"] == "2"
    assert body["versions"] == ["1", "2"]
    assert body["version_labels"] == {"stable": "1", "canary": "2"}
    assert ready.status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_requests_each_get_their_own_answer(
    kind, double, two_version_base, embedded, digit_files
):
    expected = {
        name: embedded.post("/v1/predict", files=multipart([(name, data)])).json()
        for name, data in digit_files
    }
    # With dynamic batching on, concurrent uploads share model calls: the rows must
    # still go back to the request they came from.
    with gateway(kind, double, two_version_base, batching_enabled=True) as client:

        def ask(item):
            name, data = item
            return name, client.post("/v1/predict", files=multipart([(name, data)]))

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(ask, digit_files * 4))

    for name, response in answers:
        assert response.status_code == 200, response.text
        assert_same_predictions(response.json(), expected[name])


@pytest.mark.parametrize("kind", KINDS)
def test_slow_server_answers_504_within_the_configured_deadline(
    kind, double, two_version_base, digit_files
):
    timeout, server_latency = 0.5, 4.0
    double.set_faults(latency_seconds=server_latency)
    with gateway(kind, double, two_version_base, backend_timeout_seconds=timeout) as client:
        started = time.monotonic()
        response = client.post("/v1/predict?version=2", files=multipart(digit_files[:1]))
        elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "backend_timeout"
    # The gateway gave up at its own deadline, not when the server finally answered.
    assert elapsed < server_latency - 1.5


@pytest.mark.parametrize("kind", KINDS)
def test_killed_server_gives_503_then_the_gateway_recovers_without_restart(
    kind, private_double, two_version_base, digit_files
):
    files = multipart(digit_files[:2])
    statuses: list[int] = []
    retry_afters: list[str | None] = []
    stop = threading.Event()

    with gateway(kind, private_double, two_version_base) as client:

        def traffic() -> None:
            while not stop.is_set():
                response = client.post("/v1/predict", files=files)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    retry_afters.append(response.headers.get("retry-after"))

        workers = [threading.Thread(target=traffic) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: statuses.count(200) >= 5, "traffic before the kill")
            private_double.kill()
            wait_until(lambda: statuses.count(503) >= 5, "503s after the kill")
            assert client.get("/readyz").status_code == 503

            private_double.start()  # same ports, a new process
            served_before = len(statuses)
            wait_until(
                lambda: 200 in statuses[served_before:], "a 200 after the restart", timeout=30
            )
            assert client.get("/readyz").status_code == 200
        finally:
            stop.set()
            for worker in workers:
                worker.join()

    assert set(statuses) <= {200, 503}, f"unexpected statuses: {sorted(set(statuses))}"
    assert retry_afters
    assert all(value and int(value) >= 1 for value in retry_afters)


@pytest.mark.parametrize("kind", KINDS)
def test_circuit_opens_fails_fast_then_half_opens_and_recovers(
    kind, double, two_version_base, digit_files
):
    files = multipart(digit_files[:1])
    reset_seconds = 1.0
    settings = {
        "breaker_failure_threshold": 3,
        "breaker_reset_seconds": reset_seconds,
        "backend_retries": 1,
    }
    double.set_faults(fail_next=1000, fail_code="UNAVAILABLE", fail_message="batch queue full")
    with gateway(kind, double, two_version_base, **settings) as client:
        calls_before = double.predict_calls()
        for _ in range(3):
            assert client.post("/v1/predict?version=2", files=files).status_code == 503
        # Each request tried twice (one retry), then the circuit opened.
        assert double.predict_calls() - calls_before == 6

        failed_fast = client.post("/v1/predict?version=2", files=files)
        assert failed_fast.status_code == 503
        assert "circuit open" in failed_fast.json()["error"]["message"]
        assert 1 <= int(failed_fast.headers["retry-after"]) <= reset_seconds + 1
        assert double.predict_calls() - calls_before == 6  # the server was not asked

        double.set_faults(fail_next=0)
        wait_until(
            lambda: client.post("/v1/predict?version=2", files=files).status_code == 200,
            "the half-open probe to close the circuit",
        )
        assert client.post("/v1/predict?version=2", files=files).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("code", "status", "calls"),
    [
        ("UNAVAILABLE", 503, 3),  # retried: GATEWAY_BACKEND_RETRIES=2
        ("RESOURCE_EXHAUSTED", 503, 1),  # overloaded: not retried at once
        ("DEADLINE_EXCEEDED", 504, 1),
        ("INVALID_ARGUMENT", 502, 1),  # the gateway sends the contract: not the client's fault
        ("INTERNAL", 502, 1),
    ],
)
def test_model_server_errors_map_to_gateway_statuses(
    kind, code, status, calls, double, two_version_base, digit_files
):
    double.set_faults(fail_next=calls, fail_code=code, fail_message=f"injected {code}")
    with gateway(kind, double, two_version_base, backend_retries=2) as client:
        calls_before = double.predict_calls()
        response = client.post("/v1/predict?version=2", files=multipart(digit_files[:1]))
        calls_made = double.predict_calls() - calls_before

    assert response.status_code == status, response.text
    assert calls_made == calls
    body = response.json()
    assert set(body) == {"error"}
    assert f"injected {code}" in body["error"]["message"]
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1


def test_retry_recovers_from_one_unavailable_answer(double, two_version_base, digit_files):
    double.set_faults(fail_next=1, fail_code="UNAVAILABLE")
    with gateway("grpc", double, two_version_base) as client:
        response = client.post("/v1/predict", files=multipart(digit_files[:1]))

    assert response.status_code == 200


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    """Poll `condition` (cheap, or itself a request) until true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_the_server_does_not_serve_means_not_ready_and_503(
    kind, double, two_version_base, digit_files
):
    with gateway(kind, double, two_version_base, model_name="fashion") as client:
        ready = client.get("/readyz")
        predict = client.post("/v1/predict", files=multipart(digit_files[:1]))
        models = client.get("/v1/models")

    assert ready.status_code == 503
    assert predict.status_code == 503
    assert "fashion" in predict.json()["error"]["message"]
    assert int(predict.headers["retry-after"]) >= 1
    assert models.status_code == 503

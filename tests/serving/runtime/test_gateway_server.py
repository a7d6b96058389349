"""`python -m serving` for real: uvicorn on a localhost port, requests over TCP."""

import asyncio
import re
import subprocess
import sys

import httpx
import pytest

from tests.utils.environment import REPO_ROOT
from tests.utils.gateway_process import GatewayProcess
from tests.utils.gateway_setup import publish_version
from tests.utils.imagefiles import bomb_png, png


def _clear_digits(mnist_sample, count: int = 40) -> list[tuple[bytes, int]]:
    images, labels = mnist_sample["x_test"][:count], mnist_sample["y_test"][:count]
    return [(png(image), int(label)) for image, label in zip(images, labels, strict=True)]


def test_server_answers_every_endpoint_over_http(gateway_server, mnist_sample):
    url = gateway_server.url
    data, _ = _clear_digits(mnist_sample, 1)[0]
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert http.get("/v1/models").json()["version"] == "1"
        predicted = http.post("/v1/predict", files={"file": ("d.png", data)})
        assert predicted.status_code == 200
        assert predicted.json()["model"]["version"] == "1"
        assert http.get("/").status_code == 200
        assert "gateway_http_requests_total" in http.get("/metrics").text


def test_server_logs_one_line_per_request_with_its_request_id(gateway_server):
    httpx.get(f"{gateway_server.url}/healthz", headers={"X-Request-ID": "log-line-check"})
    lines = [line for line in gateway_server.log().splitlines() if "log-line-check" in line]
    assert len(lines) == 1
    assert re.search(r"GET /healthz 200 \d+\.\dms request_id=log-line-check$", lines[0])


async def test_concurrent_requests_each_get_their_own_answer(gateway_server, mnist_sample):
    digits = _clear_digits(mnist_sample)
    async with httpx.AsyncClient(base_url=gateway_server.url, timeout=30) as http:
        alone = []
        for data, _ in digits:
            response = await http.post("/v1/predict", files={"file": ("d.png", data)})
            alone.append(response.json()["predictions"][0])

        async def ask(index: int, data: bytes) -> dict:
            response = await http.post("/v1/predict", files={"file": (f"{index}.png", data)})
            assert response.status_code == 200
            return response.json()["predictions"][0]

        together = await asyncio.gather(*(ask(i, data) for i, (data, _) in enumerate(digits)))
    assert [p["filename"] for p in together] == [f"{i}.png" for i in range(len(digits))]
    assert [p["digit"] for p in together] == [p["digit"] for p in alone]
    # The answers really differ (the tiny test model reads most of the 40, not all).
    assert len({p["digit"] for p in together}) >= 8
    for one, other in zip(together, alone, strict=True):
        assert one["probabilities"] == pytest.approx(other["probabilities"], abs=1e-5)


def test_a_bad_upload_does_not_kill_the_worker(gateway_server, mnist_sample):
    data, _ = _clear_digits(mnist_sample, 1)[0]
    bad_uploads = {
        "bomb.png": (bomb_png(), 413, "payload_too_large"),
        "cut.png": (data[:40], 400, "bad_image"),
        "empty.png": (b"", 400, "bad_image"),
        "fake.gif": (b"GIF89a garbage", 400, "bad_image"),
    }
    answers = {}
    with httpx.Client(base_url=gateway_server.url, timeout=10) as http:
        for filename, (bad, _, _) in bad_uploads.items():
            response = http.post("/v1/predict", files={"file": (filename, bad)})
            answers[filename] = (response.status_code, response.json()["error"]["code"])
        assert http.post("/v1/predict", files={"file": ("d.png", data)}).status_code == 200
    assert answers == {name: (status, code) for name, (_, status, code) in bad_uploads.items()}
    assert gateway_server.process.poll() is None


async def test_no_model_then_first_version_then_hot_swap_without_a_failed_request(
    tmp_path, tiny_model_base, mnist_sample
):
    """Starts with an empty model directory, then the exporter publishes versions 1 and 2
    while requests keep coming: 503 with Retry-After before, 200 from then on."""
    import shutil

    (tmp_path / "mnist").mkdir()
    server = GatewayProcess(
        {
            "GATEWAY_MODEL_BASE_PATH": str(tmp_path / "mnist"),
            "GATEWAY_MODEL_POLL_SECONDS": "0.1",
        },
        tmp_path / "gateway.log",
    )
    data, _ = _clear_digits(mnist_sample, 1)[0]
    try:
        # Alive but not ready: the process is up and says when to come back.
        server.wait_alive()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.headers["Retry-After"] == "1"
            refused = await http.post("/v1/predict", files={"file": ("d.png", data)})
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "backend_unavailable"
            assert refused.headers["Retry-After"] == "1"

            shutil.copytree(tiny_model_base / "mnist" / "1", tmp_path / ".staging")
            (tmp_path / ".staging").rename(tmp_path / "mnist" / "1")
            server.wait_ready()

            statuses, versions = [], []
            flowing, stop = asyncio.Event(), asyncio.Event()

            async def traffic() -> None:
                while not stop.is_set():
                    response = await http.post("/v1/predict", files={"file": ("d.png", data)})
                    statuses.append(response.status_code)
                    if len(statuses) >= 20:  # traffic is flowing on version 1
                        flowing.set()
                    if response.status_code == 200:
                        versions.append(response.json()["model"]["version"])
                        if versions[-1] == "2":
                            stop.set()

            clients = [asyncio.create_task(traffic()) for _ in range(4)]
            await asyncio.wait_for(flowing.wait(), timeout=60)
            publish_version(tmp_path, 1, 2)
            await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
    finally:
        server.stop()
    assert set(statuses) == {200}, f"failed requests during the swap: {statuses}"
    assert versions[0] == "1"
    assert versions[-1] == "2"
    assert "serving model version 2 (was 1)" in server.log()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GATEWAY_PORT", "eighty", "GATEWAY_PORT='eighty'"),
        ("GATEWAY_WORKERS", "0", "GATEWAY_WORKERS='0'"),
        ("GATEWAY_BACKEND", "tensorrt", "GATEWAY_BACKEND='tensorrt'"),
        ("GATEWAY_PROT", "8000", "did you mean GATEWAY_PORT?"),
    ],
)
def test_the_launcher_refuses_bad_settings_with_one_clear_message(variable, value, expected):
    result = subprocess.run(
        [sys.executable, "-m", "serving"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _answering_pids(log: str, request_line: str) -> set[str]:
    """Worker pids that logged `request_line` ("POST /v1/predict 200")."""
    return {
        line.split("[", 1)[1].split("]", 1)[0]
        for line in log.splitlines()
        if "] serving.access: " in line and request_line in line
    }


def test_several_workers_share_one_metrics_view(tiny_model_base, tmp_path, mnist_sample):
    server = GatewayProcess(
        {"GATEWAY_MODEL_BASE_PATH": str(tiny_model_base / "mnist"), "GATEWAY_WORKERS": "2"},
        tmp_path / "gateway.log",
    )
    data, _ = _clear_digits(mnist_sample, 1)[0]
    predicted = 0
    scrapes = []
    try:
        server.wait_ready()

        async def round_of(count: int, path: str) -> list[httpx.Response]:
            # New connections, in parallel: the kernel hands them to both workers.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
                if path == "/metrics":
                    return await asyncio.gather(*(http.get(path) for _ in range(count)))
                return await asyncio.gather(
                    *(http.post(path, files={"file": ("d.png", data)}) for _ in range(count))
                )

        for _ in range(30):  # until both workers have answered (the second may still load)
            responses = asyncio.run(round_of(8, "/v1/predict"))
            assert all(r.status_code == 200 for r in responses)
            predicted += len(responses)
            if len(_answering_pids(server.log(), "POST /v1/predict 200")) == 2:
                break
        for _ in range(30):
            scrapes += [r.text for r in asyncio.run(round_of(4, "/metrics"))]
            if len(_answering_pids(server.log(), "GET /metrics 200")) == 2:
                break
    finally:
        server.stop()
    assert len(_answering_pids(server.log(), "POST /v1/predict 200")) == 2
    assert len(_answering_pids(server.log(), "GET /metrics 200")) == 2
    for text in scrapes:  # whichever worker answered the scrape, it counts everyone's
        line = next(
            line
            for line in text.splitlines()
            if line.startswith(
                'gateway_http_requests_total{method="POST",route="/v1/predict",status="200"}'
            )
        )
        assert float(line.rsplit(" ", 1)[1]) == predicted

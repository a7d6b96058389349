"""What the gateway in front of TF Serving costs to run: its environment on disk, memory per
worker, time to ready and throughput, for one or more Python environments in turn.

    python bench/footprint.py --env before=/tmp/venv-before/bin/python \
        --env after=/tmp/venv-gateway/bin/python [--requests 100000]

Each environment must have the project installed (not editable: the gateway runs from
/tmp, away from this checkout). The gateway runs 2 workers with GATEWAY_BACKEND=grpc
against the TF Serving double (from this checkout's dev environment) serving the bench
model; wrk sends one 28x28 PNG per request at c=32. Prints a table.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.loadgen import run_wrk, write_script  # noqa: E402
from bench.model import SAMPLE_PATH, build_bench_model  # noqa: E402

BOUNDARY = "footprintboundary"


def multipart_png(path: Path) -> Path:
    import io

    import numpy as np
    from PIL import Image

    with np.load(SAMPLE_PATH) as data:
        digit = data["x_test"][0]
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + buffer.getvalue()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    path.write_bytes(body)
    return path


def environment_megabytes(python: str) -> float:
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    used = subprocess.run(["du", "-sk", prefix], capture_output=True, text=True, check=True)
    return int(used.stdout.split()[0]) / 1024


def has_tensorflow(python: str) -> bool:
    probe = "import importlib.util; print(importlib.util.find_spec('tensorflow') is not None)"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


def measure(name: str, python: str, grpc_target: str, body: Path, requests: int) -> dict:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_BACKEND": "grpc",
        "GATEWAY_TFSERVING_GRPC_TARGET": grpc_target,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "2",
        "GATEWAY_LOG_LEVEL": "warning",
        "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix=f"numba-{name}-"),
    }
    url = f"http://127.0.0.1:{port}"
    # Once to fill numba's cache (a pod's first start), then the start that is measured.
    for attempt in ("cold", "warm"):
        started = time.perf_counter()
        process = subprocess.Popen(
            [python, "-m", "serving"], cwd=tempfile.gettempdir(), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ready_seconds = wait_ready(url, process) - started
        if attempt == "cold":
            process.terminate()
            process.wait(timeout=30)
    try:
        idle = [rss_megabytes(pid) for pid in worker_pids(process.pid)]
        script = write_script(Path(tempfile.mkstemp(suffix=".lua")[1]), body, _content_type())
        run_wrk(url + "/v1/predict", script, concurrency=32, seconds=2)  # warm-up
        sent, best = 0, None
        while sent < requests:
            result = run_wrk(url + "/v1/predict", script, concurrency=32, seconds=10)
            if result.errors:
                raise SystemExit(f"{name}: {result.errors} errors under load")
            sent += result.requests
            best = result if best is None or result.rps > best.rps else best
        loaded = [rss_megabytes(pid) for pid in worker_pids(process.pid)]
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "name": name,
        "environment_mb": environment_megabytes(python),
        "tensorflow": has_tensorflow(python),
        "ready_s": ready_seconds,
        "idle_mb": idle,
        "loaded_mb": loaded,
        "requests": sent,
        "rps": best.rps,
        "p99_ms": best.p99_ms,
    }


def _content_type() -> str:
    return f"multipart/form-data; boundary={BOUNDARY}"


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise SystemExit("the gateway never got ready")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", required=True, help="NAME=PYTHON")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (make system-deps)")

    from tests.utils.tfserving_double import TFServingDouble

    export_base, _ = build_bench_model(args.workdir)
    body = multipart_png(args.workdir / "footprint-body.bin")
    double = TFServingDouble(export_base, versions=[1]).start()
    try:
        rows = [
            measure(name, python, double.grpc_target, body, args.requests)
            for name, python in (spec.split("=", 1) for spec in args.env)
        ]
    finally:
        double.kill()
    print("| environment | size | tensorflow | ready | RSS per worker, idle | "
          f"after {args.requests:,} requests | req/s (c=32) | p99 |")  # fmt: skip
    print("| --- | ---: | --- | ---: | --- | --- | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['name']} | {row['environment_mb']:,.0f} MB | "
            f"{'yes' if row['tensorflow'] else 'no'} | {row['ready_s']:.2f} s | "
            f"{' / '.join(f'{mb:.0f}' for mb in row['idle_mb'])} MB | "
            f"{' / '.join(f'{mb:.0f}' for mb in row['loaded_mb'])} MB "
            f"({row['requests']:,}) | {row['rps']:,.0f} | {row['p99_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    main()

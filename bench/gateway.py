"""Gateway throughput and latency against its baselines, in one run on this machine.

    .venv/bin/python bench/gateway.py              # ~10 minutes; writes docs/benchmarks.md
    .venv/bin/python bench/gateway.py --seconds 2  # a quick look (noisier)

Starts each server in turn on 127.0.0.1 (the gateway with the embedded backend, 1 and 2
workers, dynamic batching on and off; the baseline app of bench/baselines.py through the
same launcher and settings), drives it with wrk at concurrency 1, 8, 32 and 64, and
prints requests/s and p50/p95/p99 per cell; then the bare model call in-process (the
compute floor), the TCP_NODELAY check of multi-worker mode, and the ratios the gateway
is held to; the c=32 targets from rounds in which the gateway, the trivial route and the
signature endpoint take turns (`--only targets` runs just those). Not a test: numbers
depend on the machine and on what else runs on it.
"""

import argparse
import asyncio
import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from bench.batching import compare_policies  # noqa: E402
from bench.loadgen import LoadResult, run_wrk, write_script  # noqa: E402
from bench.model import build_bench_model  # noqa: E402
from client.payloads import (  # noqa: E402
    compose_number,
    load_digits,
    multipart_body,
    photo_jpeg,
    png_bytes,
)

CONCURRENCY = (1, 8, 32, 64)
STARTED_MARKER = "Application startup complete"
START_TIMEOUT_S = 240
WARMUP_S = 2


@dataclass(frozen=True)
class Target:
    label: str  # the row name in the tables
    path: str
    payload: str | None  # key into the payload scripts; None = GET
    concurrency: tuple[int, ...] = CONCURRENCY


@dataclass(frozen=True)
class ServerSpec:
    label: str
    app: str  # "gateway", "baselines" or "baselines-stock-uvicorn"
    workers: int
    targets: tuple[Target, ...]
    batching: bool = True
    event_loop: str = "auto"


@dataclass
class Row:
    server: ServerSpec
    target: Target
    cells: dict[int, LoadResult] = field(default_factory=dict)


GATEWAY_TARGETS = (
    Target("gateway /v1/predict, one 28x28 PNG", "/v1/predict", "png"),
    Target("gateway /v1/predict, one 640x480 JPEG", "/v1/predict", "jpeg"),
    Target("gateway /v1/predict, batch of 8 PNGs", "/v1/predict", "batch8"),
)
HEALTHZ = Target("gateway /healthz", "/healthz", None)
BASELINE_TARGETS = (
    Target("trivial upload route, one 28x28 PNG", "/upload", "png"),
    Target("trivial upload route, one 640x480 JPEG", "/upload", "jpeg", (32,)),
    Target("trivial upload route, batch of 8 PNGs", "/upload", "batch8", (32,)),
    Target("per-request signature endpoint, one 28x28 PNG", "/signature", "png"),
    Target("per-request signature endpoint, one 640x480 JPEG", "/signature", "jpeg", (32,)),
    Target("per-request signature endpoint, batch of 8 PNGs", "/signature", "batch8", (32,)),
    Target("naive Keras model.predict endpoint, one 28x28 PNG", "/naive", "png", (1, 32)),
)
UPLOAD_C1 = Target("trivial upload route, one 28x28 PNG", "/upload", "png", (1,))
PREDICT_C1 = Target("gateway /v1/predict, one 28x28 PNG", "/v1/predict", "png", (1,))


def plan() -> list[ServerSpec]:
    servers = []
    for workers in (1, 2):
        servers.append(
            ServerSpec(
                f"gateway, {workers}w, batching on", "gateway", workers, (HEALTHZ, *GATEWAY_TARGETS)
            )
        )
        servers.append(
            ServerSpec(
                f"gateway, {workers}w, batching off",
                "gateway",
                workers,
                GATEWAY_TARGETS,
                batching=False,
            )
        )
        servers.append(ServerSpec(f"baselines, {workers}w", "baselines", workers, BASELINE_TARGETS))
    # Multi-worker keep-alive with the standard-library event loop: where uvicorn #3149 bites.
    servers += [
        ServerSpec(
            "stock uvicorn --workers 2 --loop asyncio",
            "baselines-stock-uvicorn",
            2,
            (UPLOAD_C1,),
            event_loop="asyncio",
        ),
        ServerSpec(
            "our launcher, 2w, loop asyncio", "baselines", 2, (UPLOAD_C1,), event_loop="asyncio"
        ),
        ServerSpec("gateway, 2w, loop asyncio", "gateway", 2, (PREDICT_C1,), event_loop="asyncio"),
    ]
    return servers


def write_payloads(workdir: Path) -> dict[str | None, Path]:
    """Lua scripts per payload: one 28x28 PNG, one photo JPEG of each size, a batch of 8
    PNGs, a 4-digit number as a 400x120 PNG (for POST /v1/read)."""
    digits, _ = load_digits(count=8)
    pngs = [png_bytes(digit) for digit in digits]
    photos = {
        key: photo_jpeg(digits[0], np.random.default_rng(0), size, fraction=PHOTO_FRACTION)
        for key, size in PHOTO_SIZES.items()
    }
    bodies = {
        "png": multipart_body([("digit.png", pngs[0], "image/png")]),
        **{
            key: multipart_body([("photo.jpg", data, "image/jpeg")]) for key, data in photos.items()
        },
        "batch8": multipart_body([(f"d{i}.png", png, "image/png") for i, png in enumerate(pngs)]),
        "number": multipart_body([("number.png", _number_png(digits[:4]), "image/png")]),
    }
    scripts: dict[str | None, Path] = {None: write_script(workdir / "get.lua", None, None)}
    for name, body in bodies.items():
        body_file = workdir / f"{name}.bin"
        body_file.write_bytes(body.data)
        scripts[name] = write_script(workdir / f"{name}.lua", body_file, body.content_type)
    return scripts


def _number_png(digits: np.ndarray) -> bytes:
    """Four digits written side by side, resized to the 400x120 PNG the read target names."""
    number = compose_number(list(digits))
    image = Image.fromarray(number.image).resize(NUMBER_SIZE, Image.Resampling.LANCZOS)
    return png_bytes(np.asarray(image))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(spec: ServerSpec, export_base: Path, keras_path: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": str(spec.workers),
        "GATEWAY_EVENT_LOOP": spec.event_loop,
        "GATEWAY_BATCHING_ENABLED": str(spec.batching).lower(),
        "GATEWAY_MODEL_BASE_PATH": str(export_base / "mnist"),
        "BENCH_EXPORT_DIR": str(export_base / "mnist" / "1"),
        "BENCH_KERAS_PATH": str(keras_path),
    }
    if spec.app == "gateway":
        command = [sys.executable, "-m", "serving"]
    elif spec.app == "baselines":
        command = [
            sys.executable,
            "-c",
            "from serving.runtime.launcher import serve; "
            "from serving.settings import load_settings; "
            "serve(load_settings(), app='bench.baselines:create_app')",
        ]
    else:  # what `uvicorn --workers N` does out of the box
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baselines:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(spec.workers),
            "--loop",
            spec.event_loop,
            "--no-access-log",
        ]
    log_path = log_dir / f"{re.sub(r'[^a-z0-9]+', '-', spec.label.lower())}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        # Every worker logs this once its app (model included) is loaded.
        while log_path.read_text(errors="replace").count(STARTED_MARKER) < spec.workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{spec.label} did not start; see {log_path}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_server(
    spec: ServerSpec,
    scripts: dict,
    export_base: Path,
    keras_path: Path,
    workdir: Path,
    seconds: float,
) -> list[Row]:
    rows = []
    with running(spec, export_base, keras_path, workdir) as url:
        for target in spec.targets:
            script = scripts[target.payload]
            if target.path != "/naive":  # the naive route would spend the warm-up on 20 calls
                with contextlib.suppress(subprocess.SubprocessError, StopIteration):
                    run_wrk(url + target.path, script, concurrency=8, seconds=WARMUP_S)
            row = Row(spec, target)
            for concurrency in target.concurrency:
                try:
                    row.cells[concurrency] = run_wrk(
                        url + target.path,
                        script,
                        concurrency=concurrency,
                        seconds=seconds,
                        timeout_s=60,
                    )
                except (subprocess.SubprocessError, StopIteration) as error:
                    # One broken cell must not cost the other ten minutes of the run.
                    print(f"  {format_row_label(row)} c={concurrency}: wrk failed: {error}")
                    continue
                cell = format_cell(row.cells[concurrency])
                print(f"  {format_row_label(row):<75} c={concurrency:<3} {cell}", flush=True)
            rows.append(row)
    return rows


# The cells the targets are judged on: 2 workers, one 28x28 PNG, c=32.
TARGET_PATHS = ("/v1/predict", "/upload", "/signature")
TARGET_ROUNDS = 3


def measure_targets_in_turns(
    scripts: dict,
    export_base: Path,
    keras_path: Path,
    workdir: Path,
    seconds: float,
    rounds: int = TARGET_ROUNDS,
) -> dict[str, list[LoadResult]]:
    """The target cells, round after round, the servers taking turns.

    The gateway and the baselines run side by side (the one not under load idles), and
    each round loads the gateway, the trivial route and the signature endpoint one after
    the other: a slow minute of the host then slows the cells of one round alike, where
    the main table measures them minutes apart."""
    gateway = ServerSpec("gateway, 2w, batching on, in turns", "gateway", 2, ())
    baselines = ServerSpec("baselines, 2w, in turns", "baselines", 2, ())
    with (
        running(gateway, export_base, keras_path, workdir) as gateway_url,
        running(baselines, export_base, keras_path, workdir) as baselines_url,
    ):
        urls = {
            path: (gateway_url if path == "/v1/predict" else baselines_url) + path
            for path in TARGET_PATHS
        }
        for url in urls.values():
            with contextlib.suppress(subprocess.SubprocessError, StopIteration):
                run_wrk(url, scripts["png"], concurrency=8, seconds=WARMUP_S)
        turns: dict[str, list[LoadResult]] = {path: [] for path in TARGET_PATHS}
        for round_number in range(1, rounds + 1):
            for path, url in urls.items():
                result = run_wrk(url, scripts["png"], concurrency=32, seconds=seconds, timeout_s=60)
                turns[path].append(result)
                print(f"  round {round_number} {path:<12} c=32  {format_cell(result)}", flush=True)
    return turns


# Photos of a digit on paper (client.payloads.photo_jpeg): the digit's ink 10-25% of the
# frame's height; one photo per size, of the first sample digit.
PHOTO_SIZES = {"jpeg": (640, 480), "jpeg1600": (1600, 1200), "jpeg4000": (4000, 3000)}
PHOTO_FRACTION = (0.1, 0.25)
PHOTO_ROUNDS = 3
NUMBER_SIZE = (400, 120)
READ_TARGET = 0.5  # /v1/read of the number at >= this share of predict's req/s (2w, c=32)


def measure_photos_in_turns(
    scripts: dict,
    export_base: Path,
    keras_path: Path,
    workdir: Path,
    seconds: float,
    rounds: int = PHOTO_ROUNDS,
) -> dict[tuple[int, int, str], list[LoadResult]]:
    """{(workers, concurrency, payload): one result a round}: the photos in turns with the
    28x28 PNG on the same gateway, 1 worker at c=1, then 2 workers at c=32."""
    cells = [(1, 1, key) for key in ("png", *PHOTO_SIZES)]
    cells += [(2, 32, "png"), (2, 32, "jpeg"), (2, 32, "number")]
    results: dict[tuple[int, int, str], list[LoadResult]] = {cell: [] for cell in cells}
    for workers in (1, 2):
        spec = ServerSpec(f"gateway, {workers}w, photos in turns", "gateway", workers, ())
        with running(spec, export_base, keras_path, workdir) as url:
            mine = [cell for cell in cells if cell[0] == workers]
            for _, _, payload in mine:
                with contextlib.suppress(subprocess.SubprocessError, StopIteration):
                    run_wrk(url + _path(payload), scripts[payload], concurrency=4, seconds=WARMUP_S)
            for round_number in range(1, rounds + 1):
                for cell in mine:
                    _, concurrency, payload = cell
                    result = run_wrk(
                        url + _path(payload),
                        scripts[payload],
                        concurrency=concurrency,
                        seconds=seconds,
                        timeout_s=60,
                    )
                    results[cell].append(result)
                    print(
                        f"  round {round_number} {workers}w {payload:<9} c={concurrency:<3}"
                        f" {format_cell(result)}",
                        flush=True,
                    )
    return results


def _path(payload: str) -> str:
    return "/v1/read" if payload == "number" else "/v1/predict"


PHOTO_TARGETS = {"jpeg": 3.0, "jpeg1600": 4.0, "jpeg4000": 8.0}  # x the PNG's p50, 1w c=1


def photo_table(photos: dict[tuple[int, int, str], list[LoadResult]]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) of the photo targets: medians of the per-round ratios."""
    lines = []
    png = photos[(1, 1, "png")]
    for key, limit in PHOTO_TARGETS.items():
        width, height = PHOTO_SIZES[key]
        values = [ratio(p.p50_ms, q.p50_ms) for p, q in zip(photos[(1, 1, key)], png, strict=True)]
        value = statistics.median(values)
        lines.append(
            (
                f"{width}x{height} photo p50 ≤ {limit:g}x the 28x28 PNG's (1w, c=1)",
                f"{value:.1f}x (rounds: {', '.join(f'{v:.1f}x' for v in values)}; "
                f"{'/'.join(f'{p.p50_ms:.2f}' for p in photos[(1, 1, key)])} vs "
                f"{'/'.join(f'{q.p50_ms:.2f}' for q in png)} ms)",
                verdict(value <= limit),
            )
        )
    shares = [
        ratio(p.rps, q.rps)
        for p, q in zip(photos[(2, 32, "jpeg")], photos[(2, 32, "png")], strict=True)
    ]
    share = statistics.median(shares)
    lines.append(
        (
            "640x480 photo throughput ≥ 25% of the 28x28 PNG's (2w, c=32)",
            f"{share:.0%} (rounds: {', '.join(f'{v:.0%}' for v in shares)}; "
            f"{_rps(photos[(2, 32, 'jpeg')])} vs {_rps(photos[(2, 32, 'png')])} req/s)",
            verdict(share >= 0.25),
        )
    )
    shares = [
        ratio(p.rps, q.rps)
        for p, q in zip(photos[(2, 32, "number")], photos[(2, 32, "png")], strict=True)
    ]
    share = statistics.median(shares)
    width, height = NUMBER_SIZE
    lines.append(
        (
            f"POST /v1/read of a 4-digit {width}x{height} PNG ≥ {READ_TARGET:.0%} of predict's "
            "req/s for one 28x28 PNG (2w, c=32)",
            f"{share:.0%} (rounds: {', '.join(f'{v:.0%}' for v in shares)}; "
            f"{_rps(photos[(2, 32, 'number')])} vs {_rps(photos[(2, 32, 'png')])} req/s)",
            verdict(share >= READ_TARGET),
        )
    )
    return lines


def signature_floor(
    export_base: Path, seconds: float
) -> list[tuple[str, int, float, float, float, float]]:
    """(how, batch, calls/s, p50 ms, p99 ms, CPU ms a call) of the bare model call, in this
    process: the signature called eagerly (TensorFlow's default threads), and as the
    embedded backend runs it (a session callable, one thread)."""
    import tensorflow as tf

    from contract import INPUT_KEY, SIGNATURE_NAME
    from serving.backends.embedded import load_version

    version_dir = export_base / "mnist" / "1"
    eager = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_NAME]
    session_run = load_version(1, version_dir, intra_op_threads=1)
    calls = {
        "eager signature": lambda images: eager(**{INPUT_KEY: tf.constant(images)}),
        "session (the gateway's)": session_run,
    }
    digits, _ = load_digits(count=64)
    results = []
    for how, call in calls.items():
        for batch in (1, 8, 32):
            images = (digits[:batch, :, :, None] / 255.0).astype(np.float32)
            for _ in range(20):
                call(images)
            timings = []
            cpu_start = time.process_time()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                call(images)
                timings.append(time.perf_counter() - start)
            cpu_ms = (time.process_time() - cpu_start) / len(timings) * 1000
            ms = np.array(timings) * 1000
            results.append(
                (
                    how,
                    batch,
                    len(ms) / ms.sum() * 1000,
                    float(np.percentile(ms, 50)),
                    float(np.percentile(ms, 99)),
                    cpu_ms,
                )
            )
    return results


def format_row_label(row: Row) -> str:
    spec = row.server
    details = [f"{spec.workers}w"]
    if spec.app == "gateway" and row.target.path != "/healthz":
        details.append("batching " + ("on" if spec.batching else "off"))
    if spec.event_loop != "auto":
        details.append(f"loop {spec.event_loop}")
    if spec.app == "baselines-stock-uvicorn":
        details.append("stock uvicorn")
    return f"{row.target.label} [{', '.join(details)}]"


def format_cell(result: LoadResult | None) -> str:
    if result is None:
        return ""
    errors = f" ({result.errors} errors)" if result.errors else ""
    latency = f"{result.p50_ms:.1f}/{result.p95_ms:.1f}/{result.p99_ms:.1f}"
    return f"{result.rps:,.0f} req/s · {latency} ms{errors}"


def find(
    rows: list[Row],
    path: str,
    payload: str | None,
    workers: int,
    *,
    batching: bool = True,
    loop: str = "auto",
    app: str | None = None,
) -> Row | None:
    for row in rows:
        spec = row.server
        if (
            row.target.path == path
            and row.target.payload == payload
            and spec.workers == workers
            and spec.event_loop == loop
            and (spec.app != "gateway" or spec.batching == batching)
            and (app is None or spec.app == app)
        ):
            return row
    return None


def targets_table(
    rows: list[Row], turns: dict[str, list[LoadResult]] | None
) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for the gateway's stated goals: the c=32 ones from the
    rounds in turns (the median of the per-round ratios), the c=1 ones from the table."""
    lines = []
    if turns and all(turns.get(path) for path in TARGET_PATHS):
        rounds = list(zip(*(turns[path] for path in TARGET_PATHS), strict=True))

        def in_rounds(measure) -> tuple[float, list[float]]:
            values = [measure(g, u, s) for g, u, s in rounds]
            return statistics.median(values), values

        share, shares = in_rounds(lambda g, u, s: ratio(g.rps, u.rps))
        lines.append(
            (
                "throughput ≥ 50% of the trivial upload route (2w, c=32)",
                f"{share:.0%} (rounds: {', '.join(f'{v:.0%}' for v in shares)}; "
                f"{_rps(turns['/v1/predict'])} vs {_rps(turns['/upload'])} req/s)",
                verdict(share >= 0.5),
            )
        )
        speedup, speedups = in_rounds(lambda g, u, s: ratio(g.rps, s.rps))
        lines.append(
            (
                "throughput ≥ 2x the per-request signature endpoint (2w, c=32)",
                f"{speedup:.2f}x (rounds: {', '.join(f'{v:.2f}x' for v in speedups)}; "
                f"{_rps(turns['/v1/predict'])} vs {_rps(turns['/signature'])} req/s)",
                verdict(speedup >= 2),
            )
        )
        tail, tails = in_rounds(lambda g, u, s: ratio(g.p99_ms, u.p99_ms))
        lines.append(
            (
                "p99 ≤ 2x the trivial upload route's p99 (2w, c=32)",
                f"{tail:.2f}x (rounds: {', '.join(f'{v:.2f}x' for v in tails)}; "
                f"{_p99(turns['/v1/predict'])} vs {_p99(turns['/upload'])} ms)",
                verdict(tail <= 2),
            )
        )
    for workers in (1, 2):
        gateway = find(rows, "/v1/predict", "png", workers)
        upload = find(rows, "/upload", "png", workers, app="baselines")
        if gateway and upload and 1 in gateway.cells and 1 in upload.cells:
            gap = gateway.cells[1].p50_ms - upload.cells[1].p50_ms
            lines.append(
                (
                    f"p50 at c=1 within 2 ms of the trivial upload route ({workers}w)",
                    f"{gap:+.2f} ms ({gateway.cells[1].p50_ms:.2f} vs "
                    f"{upload.cells[1].p50_ms:.2f} ms)",
                    verdict(gap <= 2),
                )
            )
    return lines


def _rps(results: list[LoadResult]) -> str:
    return "/".join(f"{result.rps:,.0f}" for result in results)


def _p99(results: list[LoadResult]) -> str:
    return "/".join(f"{result.p99_ms:.1f}" for result in results)


def ratio(a: float, b: float) -> float:
    """a / b; infinite when b is 0 (a baseline that completed no request in its cell)."""
    return a / b if b else float("inf")


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def ratio_lines(rows: list[Row]) -> list[str]:
    lines = []
    for workers in (1, 2):
        on = find(rows, "/v1/predict", "png", workers, batching=True)
        off = find(rows, "/v1/predict", "png", workers, batching=False)
        naive = find(rows, "/naive", "png", workers)
        signature = find(rows, "/signature", "png", workers)
        if on and off:
            for c in (1, 32, 64):
                if c in on.cells and c in off.cells:
                    a, b = on.cells[c], off.cells[c]
                    lines.append(
                        f"- {workers}w, c={c}: dynamic batching on/off = "
                        f"{ratio(a.rps, b.rps):.2f}x "
                        f"req/s, p99 {a.p99_ms:.1f} vs {b.p99_ms:.1f} ms"
                    )
        if on and naive and 32 in naive.cells:
            speedup = ratio(on.cells[32].rps, naive.cells[32].rps)
            lines.append(f"- {workers}w, c=32: gateway / naive model.predict = {speedup:,.0f}x")
        if on and signature and 32 in signature.cells:
            speedup = ratio(on.cells[32].rps, signature.cells[32].rps)
            lines.append(f"- {workers}w, c=32: gateway / per-request signature = {speedup:.1f}x")
    return lines


CONDITIONS = """\
- load generator: wrk, one thread, keep-alive connections, on the same machine (it
  shares the CPU with the server)
- model: the seed convnet (`training.models` `convnet`) trained briefly on the committed
  sample; accuracy is irrelevant to throughput
- every server runs through the gateway's launcher with the same settings (log level
  info, uvloop), except the row marked stock uvicorn"""


NOTES = """\
## What was measured and changed

- **Where a request's time goes.** Profiled with py-spy (`py-spy record -p <worker pid>`)
  under wrk at c=32, and with cProfile on the ASGI app called in-process: MNIST-style
  preprocessing is the largest share of the gateway's CPU per 28x28 PNG, multipart
  parsing and FastAPI's request handling (parameter validation, response model,
  middleware, metrics, the access log line) most of the rest; the model call, batched,
  costs the event loop little and runs on a worker thread. The trivial upload route pays
  only the HTTP and multipart part; the per-request signature endpoint pays the same
  preprocessing as the gateway, which bounds the gateway/signature ratio.
- **Changes made from those profiles:** the gateway's FastAPI dependencies are
  `async def` (plain `def` dependencies ran in the thread pool: three thread hops per
  request); the shading map's max/min filters are separable numpy passes (bit-identical
  output; a noisy 640x480 photo's preprocessing 13.7 -> 8.3 ms); TensorFlow runs one
  thread per op in each worker (`GATEWAY_MODEL_INTRA_OP_THREADS=1`: a batch-1 call
  170 us of CPU instead of 343, batch 32 700 instead of 1,108); the model runs through
  the SavedModel signature (never `model.predict`), batched.
- **The gateway's own CPU per 28x28 PNG request** (in-process: the ASGI app called in a
  loop with the model call stubbed out, `time.process_time`): ~540 us -> ~320 us (on
  the host of the first runs); preprocessing alone ~225 -> ~120 us with
  bit-identical outputs (checked on 4,624 inputs: MNIST digits in eight presentations,
  photos, EXIF JPEGs, every accepted format): an exact replica of `np.percentile`'s
  linear method instead of its generic path (~20 -> ~2.5 us), no median of a constant
  border, no `np.pad`, the pixels from `tobytes()` rather than PIL's array interface
  (~16 us on a fresh image), no `exif_transpose` copy for a PNG without EXIF/XMP, the
  PNG size from its IHDR instead of a second `Image.open`; later also no
  `catch_warnings` block per call, `np.indices` cached, stroke width by `count_nonzero`
  (1.06-1.09x more, A/B in one process; bit-identical on a 2,529-input corpus). The
  predict route validated `version`/`label` itself only when there was a query string,
  and its route class handed the Request straight to the endpoint, which returned the
  Response itself: FastAPI's parameter solving and response validation ran even for an
  endpoint without parameters (~30 us of a ~400 us request, cProfile of the hot path).
  The response is serialised once with pydantic; metric children are cached.
- **FastAPI's own machinery on the request path** (cProfile of the hot path, 2026-11-30):
  dependency solving ~40 us a request for the three objects on `app.state` (so the
  predict route reads them directly), a plain `def` dependency ~8% of a worker's CPU
  in thread hops (so they are `async def`), response validation ~20 us (so the route
  serialises its response model itself), Starlette's multipart parser ~45 us of a
  ~400 us request (so `serving/api/multipart.py`). Since 2026-12-02 `/v1/predict`
  declares `version` and `label` as FastAPI `Query` parameters, documented and validated
  by FastAPI, and its route class (`SolvedOnlyWithAQuery`) runs FastAPI's parameter
  solving only for a request with a query string: with FastAPI 0.165 solving every
  request cost the framework side ~60 us more (`bench/hotpath.py --rounds 3`, the gateway
  with model and preprocessing stubbed: 285 and 278 us a request solving every request,
  214 and 228 us solving only with a query string, two runs in turns, one host).
- **Multipart** (`serving/api/multipart.py`): the canonical shape browsers, curl, httpx and
  our client send is parsed with a few `bytes.find` calls; anything else goes to
  Starlette's parser on the same bytes (`tests/serving/api/test_multipart.py` compares both
  on canonical and odd bodies). `read_uploads` for one 28x28 PNG 138 -> 25 us, for 8 PNGs
  334 -> 67 us (A/B in one process).
- **Garbage collection** (`serving/heap.py`): TensorFlow leaves ~300,000 long-lived
  objects, and a full collection walked them all in ~150-175 ms with the event loop
  stopped whenever one ran under load: spikes in the p99. Everything alive after start-up
  or a model load is frozen out of collection (`gc.freeze`).
- **Uneven workers.** uvicorn's workers share one listening socket, and the first to
  wake accepts a burst of connections: wrk's 32 keep-alive connections split anywhere
  from 17/15 to 31/1 (counted with `ss` in each round), and the p99 followed the split
  (2026-12-02, Intel host, 2 workers, c=32: the gateway 15-18 ms at 17/15-19/13, 27 ms at
  26/6, 35 ms at 29/3; the trivial route 9-11 ms against 18 ms at 29/3). So the launcher
  now runs its own supervisor (`serving/runtime/supervisor.py`): it accepts, and hands each
  connection to the ready worker with the fewest open ones. Split 16/16 in every round
  since; the gateway's p99 14.6-16.7 ms against the trivial route's 8.4-11.2 ms in four
  rounds, and its throughput 3,000-4,100 req/s against 2,500-3,600 before (same host,
  the same hour). A socket per worker (SO_REUSEPORT) would only have made the split
  random: the kernel picks by a hash of the connection, not by how busy a worker is.
- **The model's cost depends on the host.** The same convnet through the same signature
  cost ~22 us of CPU per image at batch 32 on the host of the first runs (2026-11-24
  before 19:00; its CPU flags were not recorded) and ~125-350 us per image at batch 16
  on a later one (AMD EPYC with AVX2 and no AVX-512; a batch-1 call ~170 us against
  ~900 us), while the HTTP side slowed only ~2.7x: the vector instructions oneDNN can
  use are the likely difference, not verified. On the later host the model alone costs
  30-75% of what a whole trivial upload request costs (~450 us of server CPU, measured
  per worker under wrk), so the gateway's share of
  the trivial route is bounded well below 50% there whatever the gateway itself does.
  Under saturation batches average ~5 images (counted per model call): the event loop,
  busy preparing requests, feeds the model about as fast as it computes. On the
  2026-12-01 host, with the model call through a session, `gateway_batch_images` counted
  ~11 images a call (2 workers, wrk c=32 for 5 s: 1,043 calls, 11,886 images; 22% of the
  calls over 16 images, which then go to a worker thread).
- **The model call** (`serving/backends/embedded.py`, 2026-12-01): the embedded backend
  runs the `serving_default` SignatureDef in a `tf.compat.v1.Session` callable, as TF
  Serving runs it, instead of calling the loaded signature eagerly (Keras `predict`
  ~110 ms a call), with every op in the
  calling thread (`inter_op_parallelism_threads=-1`). CPU per call, A/B in one process:
  batch 1 ~930 -> ~460 us (session with an inter-op thread) -> ~290-400 us (ops in the
  caller), batch 8 ~1,160 -> ~850 -> ~575-820 us, batch 32 ~2,460 -> ~2,170 -> ~1,640-1,860
  us; the same probabilities (tested). With batching on, batches of up to 16 images
  (then `GATEWAY_MODEL_INLINE_MAX_ROWS`; since 2026-12-02 the one rule of
  `GATEWAY_INLINE_BUDGET_MS`, `serving/inline.py`) are then computed on the event loop
  instead of a worker thread: the hand-off to the thread and back cost a loaded worker more than the
  batch (2 workers, one 28x28 PNG, c=32: ~1,660 -> ~2,110 req/s; c=1 p50 2.1 -> 1.7 ms).
  Not without the batcher: every request then made its own inline call and some
  connections waited for seconds (1 worker, c=32: p99 515 ms against 76 ms with the
  calls in a thread; c=64: p95 1.6 s against 0.13 s), so there every call keeps its
  thread. Why the loop then starves some connections was not found.
  For the same reason uploads of up to 300x300 pixels in all, a batch of small images
  included, are prepared on the loop (batch of 8 PNGs, c=32: ~320 -> ~450 req/s).
- **Open: the gateway's share of the trivial route since the simplification**
  (2026-12-02). `make bench-gateway` on one host within the hour: f3ff5b3 53%, 3.25x,
  p99 1.53x (16:22); the simplified tree 47%, 3.11x, 1.81x (16:08) and 39%, 2.49x, 2.15x
  (17:04, the committed run; its trivial route ran faster than in either). Both trees'
  gateways side by side, 2 workers, c=32, 4 s in turns, 3 rounds, twice: 3,612/3,009/
  2,758 (f3ff5b3) against 2,788/2,472/2,411 req/s, then 2,905/3,436/3,290 against
  2,998/3,270/2,742; with 1 worker 1,880/1,664 against 1,727/1,667. `bench/hotpath.py
  --rounds 5` in turns: the gateway 1.99x and 2.00x the trivial route's CPU (f3ff5b3)
  against 2.45x and 3.46x, the per-round figures of one row spreading by up to 40%.
  Preprocessing alone is no slower (in one process, 200 sample PNGs, best of 5:
  `preprocess` 95.0 -> 91.3 us; `mnist_like` 40.9 -> 24.3 us). Not found yet; the
  inline rule's per-row model estimate (60 us) is below this host's (batch 8 ~156 us a
  row, batch 32 ~84 us: the compute-floor table), so batches of up to 33 rows now run on
  the loop where 16 did, but a 16-row budget measured no faster.
- **The gateway without TensorFlow** (2026-12-02, `bench/footprint.py`: the gateway with
  2 workers and the gRPC backend against the TF Serving double, one 28x28 PNG a request,
  wrk c=32; before: f3ff5b3 with the `serve` extra; each environment a non-editable
  install in its own venv, same host, one after the other):

  | environment | size | TF | ready | RSS/worker idle | after 100k | req/s | p99 |
  | --- | ---: | --- | ---: | --- | --- | ---: | ---: |
  | before (`serve`) | 2,408 MB | yes | 4.93 s | 634, 698 MB | 698, 698 MB | 1,599 | 34.9 ms |
  | after (`gateway`) | 395 MB | no | 2.16 s | 201, 167 MB | 202, 202 MB | 1,461 | 37.1 ms |

  The environment is 16.4% of before (target 15%), a worker 167-202 MB (target 150),
  ready in 2.16 s (target 2 s): most of what is left is numba, which the preprocessing
  kernels need (llvmlite alone 173 MB on disk; importing the app with its kernels takes a
  process from 69 to 130 MB before any kernel is loaded). The launcher, which compiles or
  loads the kernels before starting the workers, holds ~190 MB itself. The image built by
  `scripts/images.sh gateway` is 505 MB (target 400; 2.73 GB with TensorFlow). The req/s
  difference (-9%) is one run each on a shared host, within its run-to-run spread.
- **One preprocessing, no oracle** (2026-12-02). The kernels no longer reproduce numpy's
  internals bit for bit (its pairwise summation, median and percentile were rewritten by
  hand for that, and a 344-line numpy copy of the pipeline held them to it): plain loops
  and numpy's own median and percentile inside the kernels, each kernel tested against its
  numpy expression within 1e-6. `bench/preprocessing.py --compare-with <checkout of
  f3ff5b3>` on 3,330 uploads (300 digits of the committed sample in each of 10
  conditions, 630 typed digits): 3,329 within 1.8e-7 of the old outputs (max 1.8e-7,
  mean 2e-10 a pixel), no outcome changed (every NoInk still NoInk); one thin-pen digit
  is placed one pixel lower (its centre of mass on a rounding boundary; max difference
  1.0, the whole frame the same shifted by one row).
- **Where the CPU goes now** (`bench/hotpath.py`: the ASGI apps called in-process, one
  28x28 PNG a request, c=32, rows in turns, medians of 5). Before the compiled kernels:
  decode + preprocess ~46% of the gateway's CPU per request (~199 of 432 us), 3.2x the
  whole trivial route. numpy's per-call overhead (~150 calls for a 28x28 image) was the
  cost, so the pixel loops became numba kernels (now beside each stage in
  `serving/preprocessing/`) and a small plain grayscale PNG is unfiltered by a kernel
  instead of Pillow: in a tight loop decode + preprocess 99 -> 31 us (decode 18 -> 8,
  the rest 82 -> 21), in the request mix ~199 -> ~69 us; the gateway 432 -> 290 us a
  request, 2.2x the trivial route (131 us). py-spy under wrk (before the PNG path) put
  uvicorn/httptools at ~24% of a worker's samples, Pillow's decode ~10%, the TensorFlow
  session ~6%, preprocessing ~5%, metrics ~5%, the log line ~3%.
- **Targets in turns.** The host's speed drifts by minutes (the same gateway cell gave
  1,496 and 2,303 req/s within the hour; the trivial route 4,829-5,956), so cells
  measured minutes apart made the ratios a lottery. The c=32 targets are judged on rounds in which
  the gateway, the trivial route and the signature endpoint take turns, both servers up.
- **Dynamic batching** (`serving/backends/batching.py`) sends at once when no batch is running,
  so a lone request waits for nothing; under load, requests that queue behind a running
  batch go together when it returns. A fixed wait (the textbook policy) costs a lone
  request its whole wait, as the in-process table shows.
- **Multi-worker TCP_NODELAY** (uvicorn #3149): with several workers uvicorn binds the
  socket itself and asyncio's loop then leaves Nagle's algorithm on, so each keep-alive
  response waits for the client's delayed ACK (~40 ms). uvloop sets TCP_NODELAY itself;
  the gateway sets it on every accepted connection whatever the loop and however the
  socket reached the worker (`serving/runtime/nodelay.py`). The rows with `loop asyncio` show
  stock uvicorn against the launcher; `tests/serving/runtime/test_nodelay.py` checks the socket
  option on connections of a socket bound uvicorn's multi-worker way and on connections
  handed over by the supervisor.
- **Noise.** The load generator shares the two cores with the server, and anything else
  running on the machine shows up in the tails; compare rows within one run only."""


def markdown(
    rows, turns, photos, floor, policies, started, finished, load_before, load_after, seconds
) -> str:
    import fastapi
    import tensorflow as tf
    import uvicorn

    versions = (
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}"
    )
    out = [
        "# Benchmarks",
        "",
        "Generated by `bench/gateway.py`; every number below comes from one run.",
        "",
    ]
    out += [
        "## Conditions",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC, {seconds:g} s per cell "
        f"after a {WARMUP_S} s warm-up per route",
        f"- machine: {os.cpu_count()} CPU cores ({cpu_model()}); load average before / "
        f"after: {load_before} / {load_after}",
        f"- {versions}",
        CONDITIONS,
        "",
        "## The gateway's targets",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
    ]
    out += [f"| {a} | {b} | {c} |" for a, b, c in targets_table(rows, turns)]
    if turns:
        out += [
            "",
            f"The c=32 targets are judged on {TARGET_ROUNDS} rounds in turns (the gateway, "
            "the trivial route and the signature endpoint loaded one after the other, "
            f"{seconds:g} s each, both servers running side by side): the median of the "
            "per-round ratios, each round's in brackets, then each round's figures.",
        ]
    if photos:
        out += [
            "",
            "## Photos of a digit on paper, and a number read",
            "",
            "| target | measured | |",
            "| --- | --- | --- |",
            *(f"| {a} | {b} | {c} |" for a, b, c in photo_table(photos)),
            "",
            f"{PHOTO_ROUNDS} rounds on one gateway, the photos and the 28x28 PNG loaded in "
            f"turns, {seconds:g} s each: one photo per size (client.payloads.photo_jpeg, "
            "the digit's ink 10-25% of the frame's height), the median of the per-round "
            "ratios, each round's in brackets; the number (client.payloads.compose_number, "
            "resized to 400x120) through POST /v1/read in the same turns.",
        ]
    out += [
        "",
        "## Requests/s and p50/p95/p99 latency",
        "",
        "Each cell: requests/s · p50/p95/p99 in ms.",
        "",
    ]
    header = "| route [workers, options] | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " |"
    out += [header, "| --- |" + " --- |" * len(CONCURRENCY)]
    for row in rows:
        out.append(
            f"| {format_row_label(row)} | "
            + " | ".join(format_cell(row.cells.get(c)) for c in CONCURRENCY)
            + " |"
        )
    out += [
        "",
        "## Compute floor: the model call alone, in-process",
        "",
        "| call | batch | calls/s | images/s | p50 ms | p99 ms | CPU ms a call |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    out += [
        f"| {how} | {b} | {cps:,.0f} | {cps * b:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} |"
        for how, b, cps, p50, p99, cpu in floor
    ]
    out += [
        "",
        "## Batching policy, in-process (asyncio callers, one image each, no HTTP)",
        "",
        "| policy | concurrency | calls/s | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [f"| {n} | {c} | {r:,.0f} | {p50:.2f} | {p99:.2f} |" for n, c, r, p50, p99 in policies]
    out += ["", "## Ratios", "", *ratio_lines(rows), "", NOTES]
    return "\n".join(out) + "\n"


def cpu_model() -> str:
    """Model name and widest vector instructions: the model's compute cost varied ~10x
    between two hosts of this machine type, and they may be why (NOTES)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    vectors = next((isa for isa in ("avx512f", "avx2", "avx") if isa in flags), "no AVX")
    return f"{model}, {vectors.upper()}"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per cell")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the model and logs here")
    parser.add_argument(
        "--only",
        default=None,
        help="run only servers whose label contains this ('targets': only the rounds in "
        "turns; 'photos': only the photo rounds)",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started, load_before = datetime.now(UTC), load_average()
    print(f"model and logs in {workdir}; load average {load_before}", flush=True)
    export_base, keras_path = build_bench_model(workdir / "model")
    scripts = write_payloads(workdir)
    floor = signature_floor(export_base, seconds=min(args.seconds, 3))
    for how, batch, cps, p50, p99, cpu in floor:
        print(
            f"  {how}, batch {batch:<2}: {cps:,.0f} calls/s, {cps * batch:,.0f} "
            f"images/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, CPU {cpu:.2f} ms a call"
        )

    policies = asyncio.run(compare_policies(export_base, seconds=min(args.seconds, 2)))
    for name, concurrency, rate, p50, p99 in policies:
        print(
            f"  batching policy {name}, c={concurrency}: {rate:,.0f}/s p50 {p50:.2f} p99 {p99:.2f}"
        )

    rows: list[Row] = []
    for spec in plan():
        if args.only and args.only not in spec.label:
            continue
        print(f"{spec.label}:", flush=True)
        rows += measure_server(spec, scripts, export_base, keras_path, workdir, args.seconds)

    turns = None
    if args.only is None or args.only == "targets":
        print("the targets' cells in turns:", flush=True)
        turns = measure_targets_in_turns(scripts, export_base, keras_path, workdir, args.seconds)

    photos = None
    if args.only is None or args.only == "photos":
        print("photos in turns with the 28x28 PNG:", flush=True)
        photos = measure_photos_in_turns(scripts, export_base, keras_path, workdir, args.seconds)

    finished, load_after = datetime.now(UTC), load_average()
    report = markdown(
        rows,
        turns,
        photos,
        floor,
        policies,
        started,
        finished,
        load_before,
        load_after,
        args.seconds,
    )
    print("\n" + report)
    if args.only is None:
        args.out.write_text(report)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""When should the dynamic batcher send? Its policy against the alternatives, in-process.

    .venv/bin/python bench/batching.py

Concurrent asyncio callers (no HTTP) ask the embedded backend for one image each,
through: no batcher; the batcher as shipped (send at once when nothing is in flight,
else when the running batch returns or after max_wait); and the textbook policy (always
hold the first request up to max_wait for company). Prints calls/s and latency
percentiles per concurrency: the textbook wait costs a lone request its max_wait.
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.model import build_bench_model  # noqa: E402
from serving.backends.batching import BatchingBackend  # noqa: E402
from serving.backends.embedded import EmbeddedBackend  # noqa: E402

MAX_BATCH = 64
MAX_WAIT_MS = 2.0


class FixedWaitBatching(BatchingBackend):
    """The textbook policy: the first request of a batch always waits max_wait."""

    def _schedule(self, key, queue, loop) -> None:
        if queue.rows >= self.max_batch_size:
            self._cancel_flush(queue)
            self._flush(key, queue)
        elif queue.flush_handle is None:
            queue.flush_handle = loop.call_later(self.max_wait_s, self._flush, key, queue)


async def measure(backend, concurrency: int, seconds: float) -> tuple[float, float, float]:
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < end:
            start = time.perf_counter()
            await backend.predict(image)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return len(ms) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


async def compare_policies(
    export_base: Path, seconds: float = 3.0
) -> list[tuple[str, int, float, float, float]]:
    """(policy, concurrency, calls/s, p50 ms, p99 ms) for each policy and concurrency."""
    inner = EmbeddedBackend(
        model_name="mnist",
        base_path=export_base / "mnist",
        poll_seconds=60,
        keep_versions=1,
        timeout_seconds=30,
    )
    await inner.start()
    policies = {
        "no batching": inner,
        f"shipped (max_wait {MAX_WAIT_MS:g} ms)": BatchingBackend(
            inner, max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS
        ),
        "shipped (max_wait 0: never waits for a running batch)": BatchingBackend(
            inner, max_batch_size=MAX_BATCH, max_wait_ms=0
        ),
        f"fixed wait {MAX_WAIT_MS:g} ms": FixedWaitBatching(
            inner, max_batch_size=MAX_BATCH, max_wait_ms=MAX_WAIT_MS
        ),
    }
    results = []
    try:
        for name, backend in policies.items():
            await measure(backend, 8, 0.5)  # warm-up
            for concurrency in (1, 8, 32, 64):
                rate, p50, p99 = await measure(backend, concurrency, seconds)
                results.append((name, concurrency, rate, p50, p99))
    finally:
        await inner.close()
    return results


def main() -> None:
    export_base, _ = build_bench_model(Path(tempfile.gettempdir()) / "bench-gateway-model")
    print("| policy | concurrency | calls/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, concurrency, rate, p50, p99 in asyncio.run(compare_policies(export_base)):
        print(f"| {name} | {concurrency} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()

"""wrk as the load generator: request bodies through a Lua script, percentiles as JSON.

wrk is light enough to leave the server most of a small machine's CPU, and its latency
histogram is exact enough for p99 at these rates. `--latency` prints no p95, so the Lua
`done` hook reports p50/p95/p99 itself.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_LUA_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, '
    .. '"socket_errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    status_errors: int  # non-2xx/3xx answers
    socket_errors: int  # connect/read/write errors and timeouts
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: `make system-deps` (or apt-get install wrk)")
    return path


def write_script(path: Path, body_file: Path | None, content_type: str | None) -> Path:
    """A wrk Lua script: POST the bytes of `body_file` (GET when None), report percentiles."""
    lines = []
    if body_file is not None:
        lines += [
            f'local f = assert(io.open("{body_file}", "rb"))',
            'wrk.method = "POST"',
            'wrk.body = f:read("*a")',
            "f:close()",
            f'wrk.headers["Content-Type"] = "{content_type}"',
        ]
    path.write_text("\n".join(lines) + _LUA_DONE)
    return path


def run_wrk(
    url: str, script: Path, *, concurrency: int, seconds: float, timeout_s: float = 30
) -> LoadResult:
    command = [
        wrk_path(),
        "-t1",  # one load thread: the server keeps the other core
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={int(timeout_s)}s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + timeout_s + 30
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        status_errors=raw["status_errors"],
        socket_errors=raw["socket_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )

"""Gateway settings: environment variables prefixed GATEWAY_, read once at start-up.

A bad value (or a misspelt GATEWAY_ variable) stops the process with a clear message
instead of surfacing later as odd behaviour under traffic.
"""

import difflib
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from contract import DIGIT_THRESHOLD, IMAGE_SIZE, MODEL_NAME

BackendKind = Literal["embedded", "grpc", "rest"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid", frozen=True)

    # Where predictions come from.
    backend: BackendKind = "embedded"
    model_name: str = MODEL_NAME
    model_base_path: Path = Path("models/mnist")
    model_poll_seconds: float = Field(2.0, gt=0, description="embedded: new-version poll")
    model_keep_versions: int = Field(2, ge=1, le=16)
    # embedded: TensorFlow threads per op (0 = TensorFlow's default, one per core). One is
    # cheapest where workers already fill the cores (docs/benchmarks.md).
    model_intra_op_threads: int = Field(1, ge=0, le=256)
    # What runs on the event loop rather than in a worker thread (serving/inline.py): steps
    # estimated at most this many milliseconds of CPU. 0: every step in a thread.
    inline_budget_ms: float = Field(2.0, ge=0, le=100)
    tfserving_grpc_target: str = "localhost:8500"
    tfserving_rest_url: str = "http://localhost:8501"
    backend_timeout_seconds: float = Field(5.0, gt=0, le=300)
    # An image is a digit when the model's digit_score is at least this. The exporter
    # calibrates every model for contract.DIGIT_THRESHOLD; another value trades false
    # rejections of digits against accepted non-digits (docs/DESIGN.md).
    digit_threshold: float = Field(DIGIT_THRESHOLD, ge=0, le=1)

    # TensorFlow Serving backends (grpc, rest). See README "TensorFlow Serving".
    # round_robin spreads calls over every address a dns:/// target resolves to
    # (a headless Service); pick_first pins one connection to the first address.
    tfserving_grpc_lb_policy: Literal["round_robin", "pick_first"] = "round_robin"
    # gRPC's client default caps received messages at 4 MiB.
    tfserving_grpc_max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=4 * 1024 * 1024, le=2**31 - 1
    )
    tfserving_grpc_keepalive_seconds: float = Field(30.0, ge=1, le=3600)
    tfserving_rest_max_connections: int = Field(64, ge=1, le=4096)
    # The server's batching max_batch_size: larger batches are sent in chunks.
    tfserving_max_batch_size: int = Field(128, ge=1, le=65536)
    # Label for requests that name no version or label (canary rollouts: "stable"); unset,
    # TF Serving answers them with its highest loaded version.
    tfserving_default_label: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    # TF Serving has no call that lists labels: GET /v1/models looks these names up.
    tfserving_version_labels: tuple[str, ...] = ("stable", "canary")
    # rest: how long a resolved "latest version" / label -> version answer is reused.
    tfserving_version_cache_seconds: float = Field(2.0, ge=0, le=600)
    # Retries of calls that failed before reaching a server, inside the per-call timeout.
    backend_retries: int = Field(2, ge=0, le=10)
    backend_retry_backoff_seconds: float = Field(0.05, gt=0, le=10)
    # Circuit breaker: open after this many consecutive failures, probe again after reset.
    breaker_failure_threshold: int = Field(5, ge=1, le=10_000)
    breaker_reset_seconds: float = Field(5.0, gt=0, le=3600)

    # HTTP server.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    # "auto" = uvloop when installed; "asyncio" for the standard library's loop.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    log_level: LogLevel = "info"

    # Request limits.
    max_request_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=IMAGE_SIZE * IMAGE_SIZE)
    max_files_per_request: int = Field(64, ge=1, le=1024)
    # POST /v1/read: most segments one image may hold (a page of text is refused cheaply).
    max_digits_per_image: int = Field(32, ge=1, le=1024)

    # Dynamic batching of concurrent requests into one model call.
    batching_enabled: bool = True
    batch_max_size: int = Field(64, ge=1, le=4096)
    batch_max_wait_ms: float = Field(2.0, ge=0, le=1000)

    @model_validator(mode="after")
    def _check_combinations(self) -> "Settings":
        if self.backend == "embedded" and importlib.util.find_spec("tensorflow") is None:
            raise ValueError(
                "GATEWAY_BACKEND=embedded needs TensorFlow, which this environment lacks: "
                "install the `embedded` extra (pip install 'mnist-serving[embedded]'), or "
                "set GATEWAY_BACKEND=grpc or rest to use TensorFlow Serving"
            )
        if self.backend == "rest" and not self.tfserving_rest_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("GATEWAY_TFSERVING_REST_URL must start with http:// or https://")
        if self.backend == "grpc" and not self.tfserving_grpc_target.strip():
            raise ValueError("GATEWAY_TFSERVING_GRPC_TARGET must not be empty")
        if self.tfserving_default_label is not None and self.backend == "embedded":
            raise ValueError(
                "GATEWAY_TFSERVING_DEFAULT_LABEL needs a TF Serving backend (grpc or rest)"
            )
        if self.backend_retry_backoff_seconds >= self.backend_timeout_seconds:
            raise ValueError(
                "GATEWAY_BACKEND_RETRY_BACKOFF_SECONDS must be shorter than "
                "GATEWAY_BACKEND_TIMEOUT_SECONDS"
            )
        return self


ENV_PREFIX = "GATEWAY_"


class SettingsError(ValueError):
    """Configuration that must stop the process, with a message fit for an operator."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """GATEWAY_* variables that name no setting: pydantic-settings would ignore them."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )


def load_settings() -> Settings:
    """Settings from the process environment, refusing misspelt names and bad values
    clearly, every problem at once."""
    known = sorted(ENV_PREFIX + name.upper() for name in Settings.model_fields)
    problems = []
    for name in unknown_variables(os.environ):
        close = difflib.get_close_matches(name.upper(), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name}: not a setting{hint}")
    try:
        settings = Settings()
    except ValidationError as error:
        problems.extend(_describe(error))
    except SourceError as error:  # a sequence setting that is not JSON: it stops there
        named = re.search(r'field "(\w+)"', str(error))
        variable = ENV_PREFIX + named.group(1).upper() if named else "a GATEWAY_ variable"
        problems.append(f"{variable}: not a JSON list ({error.__cause__ or error})")
    if not problems:
        return settings
    raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems))


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field in Settings.model_fields:
            variable = ENV_PREFIX + field.upper()
            lines.append(f"{variable}={item['input']!r}: {item['msg']}")
        else:
            lines.append(str(item["msg"]).removeprefix("Value error, "))
    return lines


def environment_defaults() -> dict[str, str]:
    """Every GATEWAY_* variable and its default as one would write it in the environment
    (the README's configuration table is checked against this)."""
    return {
        ENV_PREFIX + name.upper(): _as_environment_value(field.default)
        for name, field in Settings.model_fields.items()
    }


def _as_environment_value(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return str(value)

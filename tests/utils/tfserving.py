"""Gateway settings and backends pointed at the TF Serving test double."""

from pathlib import Path

from serving.backends import BACKENDS
from serving.settings import Settings
from tests.utils.tfserving_double import TFServingDouble

LABELS = {"stable": 1, "canary": 2}


def tfserving_settings(kind: str, double: TFServingDouble, model_base: Path, **overrides):
    values = {
        "backend": kind,
        "tfserving_grpc_target": double.grpc_target,
        "tfserving_rest_url": double.rest_url,
        "model_base_path": model_base / "mnist",
        "batching_enabled": False,
        "breaker_reset_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


def make_backend(kind: str, settings: Settings):
    """The backend the gateway's registry makes for `kind`, unbatched."""
    return BACKENDS[kind](settings)

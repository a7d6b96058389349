"""Setting up gateways in tests: settings for the in-process app, model versions on disk."""

import shutil
from pathlib import Path

from serving.settings import Settings


def gateway_settings(model_base: Path, **overrides) -> Settings:
    # Batching is the throughput engineer's layer, tested on its own; these tests pin
    # the plain request path.
    return Settings(
        **{"model_base_path": model_base / "mnist", "batching_enabled": False} | overrides
    )


def publish_version(model_base: Path, source_version: int, new_version: int) -> Path:
    """Copy a version under a new number the way the exporter does: staged, then renamed."""
    model_dir = model_base / "mnist"
    staging = model_dir / f".{new_version}-partial"
    shutil.copytree(model_dir / str(source_version), staging)
    final = model_dir / str(new_version)
    staging.rename(final)
    return final

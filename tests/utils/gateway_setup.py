"""Setting up gateways in tests: settings for the in-process app, model versions on disk."""

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from unittest import mock

from serving.settings import Settings, load_settings


def gateway_settings(model_base: Path, **overrides) -> Settings:
    # Batching is the throughput engineer's layer, tested on its own; these tests pin
    # the plain request path.
    return Settings(
        **{"model_base_path": model_base / "mnist", "batching_enabled": False} | overrides
    )


def settings_from(environment: Mapping[str, str]) -> Settings:
    """What the gateway's loader makes of exactly this environment (a manifest's, say)."""
    with mock.patch.dict(os.environ, environment, clear=True):
        return load_settings()


def publish_version(model_base: Path, source_version: int, new_version: int) -> Path:
    """Copy a version under a new number the way the exporter does: staged, then renamed."""
    model_dir = model_base / "mnist"
    staging = model_dir / f".{new_version}-partial"
    shutil.copytree(model_dir / str(source_version), staging)
    final = model_dir / str(new_version)
    staging.rename(final)
    return final

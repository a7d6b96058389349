"""Shared fixtures: the committed MNIST sample and a real tiny SavedModel trained on it."""

import os
from pathlib import Path

import numpy as np
import pytest

from tests.utils.environment import SAMPLE_PATH
from tests.utils.models import export_tiny_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist_sample() -> dict[str, np.ndarray]:
    with np.load(SAMPLE_PATH) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def tiny_model_base(tmp_path_factory, mnist_sample) -> Path:
    """An export base holding mnist/1: the tiny model (tests.utils.models)."""
    export_base = tmp_path_factory.mktemp("export")
    export_tiny_model(export_base, mnist_sample, seed=0, epochs=3)
    return export_base


# Epochs of the seed convnet on the 2,000-image sample when no full MNIST is at hand.
SAMPLE_EPOCHS = 8


@pytest.fixture(scope="session")
def well_trained_model_base(tmp_path_factory) -> Path:
    """An export base holding mnist/1 trained through the real training job, once a session.

    With MNIST_NPZ set: the default model's `fast` profile on the full 60k (>=99% on the
    10k test set, minutes on 2 cores). Without it: the seed convnet for a few epochs on the
    committed sample (about 95% on the sample's test images). metadata.json says which.
    """
    from training.data import load_npz
    from training.models import DEFAULT_MODEL
    from training.train import TrainConfig, train

    full_data = os.environ.get("MNIST_NPZ")
    data = load_npz(Path(full_data) if full_data else SAMPLE_PATH)
    export_base = tmp_path_factory.mktemp("well-trained")
    config = TrainConfig(
        model=DEFAULT_MODEL if full_data else "convnet",
        profile="fast",
        export_base=export_base,
        epochs=None if full_data else SAMPLE_EPOCHS,
        logdir=None,
        verbose=0,
    )
    train(config, data)
    return export_base

"""Shared fixtures: the committed MNIST sample and a real tiny SavedModel trained on it."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PATH = REPO_ROOT / "data" / "mnist-sample.npz"


def require_tool(executable: str) -> str:
    """Path of a system tool a test drives; skip without it, except in CI where it must exist."""
    path = shutil.which(executable)
    if path is None:
        message = f"{executable} is not installed (make system-deps installs it)"
        if os.environ.get("MNIST_SERVING_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mnist_sample() -> dict[str, np.ndarray]:
    with np.load(SAMPLE_PATH) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def tiny_model_base(tmp_path_factory, mnist_sample) -> Path:
    """An export base holding mnist/1: the seed convnet trained briefly on the sample.

    Real TensorFlow, real SavedModel, a few seconds of training: good enough to tell
    most digits apart, not good enough for accuracy figures.
    """
    import keras

    from training.export import export_model
    from training.models import LADDER

    keras.utils.set_random_seed(0)
    x = (mnist_sample["x_train"][..., None] / 255.0).astype(np.float32)
    model = LADDER["convnet"].build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, mnist_sample["y_train"], epochs=3, batch_size=64, verbose=0)
    export_base = tmp_path_factory.mktemp("export")
    export_model(model, export_base, {"model": "convnet", "purpose": "tests"}, x[:8])
    return export_base


# Epochs of the seed convnet on the 2,000-image sample when no full MNIST is at hand.
SAMPLE_EPOCHS = 8


@pytest.fixture(scope="session")
def well_trained_model_base(tmp_path_factory) -> Path:
    """An export base holding mnist/1 trained through the real training job, once a session.

    With MNIST_NPZ set: the `fast` profile on the full 60k (>=99% on the 10k test set,
    minutes on 2 cores). Without it: the seed convnet for a few epochs on the committed
    sample (about 95% on the sample's test images). metadata.json says which.
    """
    from training.data import load_npz
    from training.train import TrainConfig, train

    full_data = os.environ.get("MNIST_NPZ")
    data = load_npz(Path(full_data) if full_data else SAMPLE_PATH)
    export_base = tmp_path_factory.mktemp("well-trained")
    config = TrainConfig(
        model="convnet",
        profile="fast",
        export_base=export_base,
        epochs=None if full_data else SAMPLE_EPOCHS,
        logdir=None,
        verbose=0,
    )
    train(config, data)
    return export_base

"""End to end on the real data: the default `fast` profile reaches 99% on the 10k test set."""

import json
import os

import numpy as np
import pytest

from contract import INPUT_KEY, METADATA_FILENAME, OUTPUT_KEY, SIGNATURE_NAME
from training.data import load_npz, to_model_input
from training.export import existing_versions, model_dir

pytestmark = pytest.mark.full_data


@pytest.fixture
def full_mnist_path():
    path = os.environ.get("MNIST_NPZ")
    if not path:
        pytest.skip("MNIST_NPZ is not set (the full 60k/10k MNIST npz)")
    return path


def test_fast_profile_reaches_99_percent_on_the_full_test_set(
    full_mnist_path, well_trained_model_base
):
    (version,) = existing_versions(well_trained_model_base)
    version_dir = model_dir(well_trained_model_base) / str(version)
    metadata = json.loads((version_dir / METADATA_FILENAME).read_text())
    data = load_npz(full_mnist_path)
    # The validation split comes out of the 60k training images, never the test set.
    assert (metadata["train_examples"], metadata["validation_examples"]) == (54_000, 6_000)
    assert metadata["test_examples"] == 10_000
    assert metadata["data_sha256"] == data.sha256
    assert metadata["profile"] == "fast"
    assert metadata["test_accuracy"] >= 0.99, metadata

    # Not only the recorded figure: the exported SavedModel itself, through its signature.
    import tensorflow as tf

    signature = (loaded := tf.saved_model.load(str(version_dir))).signatures[SIGNATURE_NAME]
    images = to_model_input(data.x_test)
    probabilities = np.concatenate(
        [
            signature(**{INPUT_KEY: tf.constant(images[i : i + 1000])})[OUTPUT_KEY].numpy()
            for i in range(0, len(images), 1000)
        ]
    )
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.y_test))
    assert accuracy >= 0.99
    assert accuracy == pytest.approx(metadata["test_accuracy"], abs=1e-6)
    del loaded

"""Versioning and atomicity of exports, and the accuracy gate."""

import threading
from pathlib import Path

import numpy as np
import pytest

from contract import METADATA_FILENAME, WARMUP_RELATIVE_PATH
from tests.utils.environment import SAMPLE_PATH
from training.data import MnistData, load_npz, to_model_input
from training.export import existing_versions, export_model, model_dir
from training.models import LADDER
from training.train import AccuracyGateError, TrainConfig, train


@pytest.fixture(scope="module")
def tiny_data() -> MnistData:
    data = load_npz(SAMPLE_PATH)
    return MnistData(
        data.x_train[:256], data.y_train[:256], data.x_test[:128], data.y_test[:128],
        data.sha256, data.source,
    )  # fmt: skip


@pytest.fixture(scope="module")
def untrained_softmax():
    return LADDER["softmax"].build()


def _config(export_base: Path, **overrides) -> TrainConfig:
    settings = {
        "model": "softmax",
        "export_base": export_base,
        "epochs": 1,
        "logdir": None,
        "report": False,
        "verbose": 0,
    }
    return TrainConfig(**(settings | overrides))


def test_versions_increment_with_each_training_run(tmp_path, tiny_data):
    first = train(_config(tmp_path), tiny_data)
    second = train(_config(tmp_path, seed=1), tiny_data)
    assert (first.export_dir.name, second.export_dir.name) == ("1", "2")
    assert existing_versions(tmp_path) == [1, 2]
    assert second.metadata["version"] == 2


def test_next_version_follows_the_highest_not_the_count(tmp_path, untrained_softmax):
    images = to_model_input(np.zeros((2, 28, 28), np.uint8))
    export_model(untrained_softmax, tmp_path, {}, images, version=7)
    assert export_model(untrained_softmax, tmp_path, {}, images).name == "8"


def test_accuracy_gate_refuses_and_leaves_no_version_directory(tmp_path, tiny_data):
    with pytest.raises(
        AccuracyGateError, match=r"below the required 0\.9990; nothing was exported"
    ):
        train(_config(tmp_path, min_accuracy=0.999), tiny_data)
    assert existing_versions(tmp_path) == []
    assert not model_dir(tmp_path).exists() or list(model_dir(tmp_path).iterdir()) == []


def test_accuracy_gate_lets_a_good_enough_model_through(tmp_path, tiny_data):
    result = train(_config(tmp_path, min_accuracy=0.0), tiny_data)
    assert existing_versions(tmp_path) == [1]
    assert result.metadata["test_accuracy"] >= 0.0


def test_existing_version_is_never_overwritten(tmp_path, untrained_softmax):
    images = to_model_input(np.zeros((2, 28, 28), np.uint8))
    first = export_model(untrained_softmax, tmp_path, {"run": "first"}, images, version=1)
    with pytest.raises(FileExistsError):
        export_model(untrained_softmax, tmp_path, {"run": "second"}, images, version=1)
    assert '"run": "first"' in (first / METADATA_FILENAME).read_text()


def test_failed_export_leaves_nothing_behind(tmp_path, untrained_softmax):
    images = to_model_input(np.zeros((2, 28, 28), np.uint8))
    # The SavedModel is written before the missing file is noticed: the staging must go.
    with pytest.raises(FileNotFoundError):
        export_model(
            untrained_softmax, tmp_path, {}, images, extra_files={"report.png": tmp_path / "no"}
        )
    assert list(model_dir(tmp_path).iterdir()) == []


def test_a_version_directory_is_never_visible_half_written(tmp_path, untrained_softmax):
    """A poller, like TF Serving's, only ever sees complete versions."""
    images = to_model_input(np.zeros((2, 28, 28), np.uint8))
    required = ("saved_model.pb", "variables/variables.index", WARMUP_RELATIVE_PATH,
                METADATA_FILENAME, "report.png")  # fmt: skip
    report = tmp_path / "report.png"
    report.write_bytes(b"\x89PNG\r\n\x1a\n")
    export_base = tmp_path / "base"
    done = threading.Event()
    seen: dict[int, list[str]] = {}

    def look():
        for version in existing_versions(export_base):
            version_dir = model_dir(export_base) / str(version)
            missing = [name for name in required if not (version_dir / name).exists()]
            seen.setdefault(version, []).extend(missing or ["complete"])

    def poll():
        while not done.is_set():
            look()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(3):
            export_model(
                untrained_softmax, export_base, {}, images, extra_files={"report.png": report}
            )
    finally:
        done.set()
        poller.join()
    look()
    assert set(seen) == {1, 2, 3}
    assert all(set(observations) == {"complete"} for observations in seen.values()), seen


def test_mixed_precision_export_keeps_the_float32_contract(tmp_path, tiny_data):
    import tensorflow as tf

    from contract import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME

    try:
        result = train(_config(tmp_path, model="convnet", mixed_precision=True), tiny_data)
    finally:
        import keras

        keras.mixed_precision.set_global_policy("float32")
    assert result.metadata["mixed_precision"] is True
    signature = (loaded := tf.saved_model.load(str(result.export_dir))).signatures[SIGNATURE_NAME]
    images = tf.constant(to_model_input(tiny_data.x_test[:5]))
    probabilities = signature(**{INPUT_KEY: images})[OUTPUT_KEY]
    assert probabilities.dtype == tf.float32
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-5)
    del loaded

"""Every ladder stage trains through the real job and exports a contract-true SavedModel."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from contract import (
    DIGIT_SCORE_KEY,
    INPUT_KEY,
    INPUT_SHAPE,
    METADATA_FILENAME,
    NUM_CLASSES,
    OUTPUT_KEY,
    SIGNATURE_NAME,
    WARMUP_RELATIVE_PATH,
)
from tests.utils.environment import SAMPLE_PATH
from training.data import MnistData, load_npz, to_model_input
from training.models import LADDER
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def small_sample() -> MnistData:
    """A slice of the committed sample: a few training steps per stage, not accuracy."""
    data = load_npz(SAMPLE_PATH)
    return MnistData(
        x_train=data.x_train[:512],
        y_train=data.y_train[:512],
        x_test=data.x_test[:256],
        y_test=data.y_test[:256],
        sha256=data.sha256,
        source=data.source,
    )


@pytest.fixture(scope="module", params=list(LADDER))
def exported(request, tmp_path_factory, small_sample):
    """(stage name, version directory, training result) for each ladder stage."""
    config = TrainConfig(
        model=request.param,
        export_base=tmp_path_factory.mktemp(request.param),
        epochs=1,
        batch_size=64,
        logdir=None,
        report=False,
        verbose=0,
    )
    result = train(config, small_sample)
    return request.param, result.export_dir, result


def _signature(version_dir: Path):
    loaded = tf.saved_model.load(str(version_dir))
    # Keep the loaded object alive as long as its concrete function is used.
    return loaded, loaded.signatures[SIGNATURE_NAME]


def test_export_lands_in_the_first_version_directory(exported):
    _, version_dir, result = exported
    assert version_dir.name == "1"
    assert version_dir.parent.name == "mnist"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert result.export_dir == version_dir


def test_signature_has_exactly_the_contract_names_shapes_and_dtypes(exported):
    _, version_dir, _ = exported
    _loaded, signature = _signature(version_dir)
    args, kwargs = signature.structured_input_signature
    assert args == ()
    assert set(kwargs) == {INPUT_KEY}
    assert kwargs[INPUT_KEY].shape.as_list() == [None, *INPUT_SHAPE]
    assert kwargs[INPUT_KEY].dtype == tf.float32
    outputs = signature.structured_outputs
    assert set(outputs) == {OUTPUT_KEY, DIGIT_SCORE_KEY}
    assert outputs[OUTPUT_KEY].shape.as_list() == [None, NUM_CLASSES]
    assert outputs[OUTPUT_KEY].dtype == tf.float32
    assert outputs[DIGIT_SCORE_KEY].shape.as_list() == [None]
    assert outputs[DIGIT_SCORE_KEY].dtype == tf.float32


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_probabilities_are_a_distribution_per_image(exported, small_sample, batch):
    _, version_dir, _ = exported
    _loaded, signature = _signature(version_dir)
    images = to_model_input(small_sample.x_test[:batch])
    outputs = signature(**{INPUT_KEY: tf.constant(images)})
    probabilities = outputs[OUTPUT_KEY].numpy()
    assert probabilities.shape == (batch, NUM_CLASSES)
    assert probabilities.dtype == np.float32
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    scores = outputs[DIGIT_SCORE_KEY].numpy()
    assert scores.shape == (batch,)
    assert scores.dtype == np.float32
    assert ((scores >= 0) & (scores <= 1)).all()


def test_warmup_file_holds_prediction_logs_the_signature_accepts(exported):
    _, version_dir, _ = exported
    _loaded, signature = _signature(version_dir)
    records = list(tf.data.TFRecordDataset(str(version_dir / WARMUP_RELATIVE_PATH)))
    assert records, "no warm-up records"
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "mnist"
        assert request.model_spec.signature_name == SIGNATURE_NAME
        assert set(request.inputs) == {INPUT_KEY}
        images = tf.make_ndarray(request.inputs[INPUT_KEY])
        assert images.dtype == np.float32
        assert images.shape[1:] == INPUT_SHAPE
        probabilities = signature(**{INPUT_KEY: tf.constant(images)})[OUTPUT_KEY].numpy()
        assert probabilities.shape == (len(images), NUM_CLASSES)


def test_metadata_describes_the_run(exported, small_sample):
    name, version_dir, result = exported
    metadata = json.loads((version_dir / METADATA_FILENAME).read_text())
    assert metadata == result.metadata
    assert metadata["model"] == name
    assert metadata["version"] == 1
    assert metadata["epochs"] == 1
    assert metadata["profile"] == "fast"
    assert metadata["seed"] == 0
    assert metadata["parameters"] == LADDER[name].build().count_params()
    assert metadata["data_sha256"] == hashlib.sha256(SAMPLE_PATH.read_bytes()).hexdigest()
    # The validation split is carved from the training images, never from the test set.
    assert (metadata["train_examples"], metadata["validation_examples"]) == (461, 51)
    assert metadata["typed_digit_examples"] == 13  # 3% of the training digits
    assert metadata["coarse_digit_examples"] == 13  # likewise
    negatives = metadata["negative_examples"]
    assert negatives == {"train": 69, "validation": 51, "test": 256}
    calibration = metadata["calibration"]
    assert calibration["temperature"] > 0
    assert calibration["digit_threshold"] == 0.5
    for key in (
        "ece_test_before", "ece_test_after", "false_rejection_rate_validation",
        "rejection_rate_validation", "false_rejection_rate_test", "rejection_rate_test",
    ):  # fmt: skip
        assert 0 <= calibration[key] <= 1, key
    assert metadata["test_examples"] == 256
    assert metadata["training_seconds"] > 0
    assert {"tensorflow", "keras", "numpy", "python"} <= set(metadata["libraries"])
    # The recorded accuracy is the exported model's accuracy on the test split.
    _loaded, signature = _signature(version_dir)
    images = to_model_input(small_sample.x_test)
    predicted = signature(**{INPUT_KEY: tf.constant(images)})[OUTPUT_KEY].numpy().argmax(axis=1)
    accuracy = np.mean(predicted == small_sample.y_test)
    assert metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)

"""The training job: data -> tf.data pipeline -> fit with TensorBoard -> calibrate ->
evaluate -> gate -> export.

`train(config, data)` is the whole job as a function; the CLI (training/cli.py) only
parses flags, reads the environment and loads the data.

No choice is made on the test set. A validation split carved from the training images
(training/splits.py, fixed by the seed) gives the curves and fits the calibration with
held-out negatives; the test set gives the figures reported at the end, once.
"""

import contextlib
import json
import logging
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from contract import DIGIT_THRESHOLD, METADATA_FILENAME, PIXEL_MAX
from training import calibration as cal
from training.data import MnistData, to_model_input
from training.export import export_model
from training.models import DEFAULT_MODEL, LADDER, NUM_OUTPUTS
from training.recipes import (
    EpochClock,
    LearningRateLog,
    Profile,
    compile_for_training,
    epochs_for,
    seconds_to_reach,
)
from training.report import write_report
from training.splits import make_splits, with_negatives

log = logging.getLogger(__name__)

REPORT_FILENAME = "report.png"
WARMUP_IMAGES = 8
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "elapsed_seconds")


class AccuracyGateError(Exception):
    """The trained model is below --min-accuracy; nothing was exported."""

    def __init__(self, accuracy: float, minimum: float):
        super().__init__(
            f"test accuracy {accuracy:.4f} is below the required {minimum:.4f}; "
            "nothing was exported"
        )
        self.accuracy = accuracy
        self.minimum = minimum


@dataclass(frozen=True)
class TrainConfig:
    model: str = DEFAULT_MODEL
    profile: Profile = "fast"
    export_base: Path = Path("models")
    epochs: int | None = None  # None: the profile's
    batch_size: int | None = None  # None: the recipe's
    seed: int = 0
    min_accuracy: float | None = None
    logdir: Path | None = Path("runs")  # None: no TensorBoard logs
    mixed_precision: bool = False
    deterministic: bool = False
    report: bool = True
    verbose: int | str = "auto"  # Keras progress output: "auto", 0, 1 or 2


@dataclass(frozen=True)
class TrainResult:
    export_dir: Path
    test_accuracy: float
    metadata: dict[str, Any]
    run_dir: Path | None


def configure_devices(mixed_precision: bool) -> tf.distribute.Strategy:
    """Several GPUs: MirroredStrategy; otherwise the default (one GPU or the CPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Take GPU memory as needed rather than all of it: TF Serving may share the card.
        # RuntimeError: already initialised by an earlier run in this process.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if mixed_precision:
        if not gpus:
            log.warning("--mixed-precision without a GPU: float16 math on a CPU is slower")
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("float32")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """uint8 images and integer labels (NOT_A_DIGIT for negatives) -> batches of the
    contract's floats and one-hot labels.

    Scaling happens per batch inside the pipeline so the 60k images stay uint8 in memory.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype(np.int32)))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)

    def scale(x, y):
        return tf.cast(x, tf.float32) / PIXEL_MAX, tf.one_hot(y, NUM_OUTPUTS)

    return (
        dataset.batch(batch_size)
        .map(scale, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


def _devices() -> list[str]:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return ["cpu"]
    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in gpus]  # fmt: skip


def _library_versions() -> dict[str, str]:
    import matplotlib

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }


def calibration_figures(
    calibration: cal.Calibration,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    test_negative_logits: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """What metadata.json records of the calibration: its parameters, the threshold, ECE
    on the test digits before and after, and the rejection rates it gives on held-out
    data (validation, and the test digits with held-out-font negatives)."""
    validation_digits, validation_negatives = validation
    at_validation = cal.rejection_rates(
        cal.digit_scores(validation_digits, calibration),
        cal.digit_scores(validation_negatives, calibration),
    )
    at_test = cal.rejection_rates(
        cal.digit_scores(test_logits, calibration),
        cal.digit_scores(test_negative_logits, calibration),
    )
    return {
        **calibration.as_dict(),
        "digit_threshold": DIGIT_THRESHOLD,
        "ece_test_before": round(
            cal.expected_calibration_error(cal.digit_probabilities(test_logits), test_labels), 6
        ),
        "ece_test_after": round(
            cal.expected_calibration_error(
                cal.digit_probabilities(test_logits, calibration.temperature), test_labels
            ),
            6,
        ),
        "false_rejection_rate_validation": round(at_validation["false_rejection_rate"], 6),
        "rejection_rate_validation": round(at_validation["rejection_rate"], 6),
        "false_rejection_rate_test": round(at_test["false_rejection_rate"], 6),
        "rejection_rate_test": round(at_test["rejection_rate"], 6),
    }


def train(config: TrainConfig, data: MnistData) -> TrainResult:
    """Train `config.model` on `data`, evaluate on its test split and export a new version.

    Raises AccuracyGateError (and exports nothing) below `config.min_accuracy`.
    """
    if config.model not in LADDER:
        raise ValueError(f"unknown model {config.model!r}; choose one of {', '.join(LADDER)}")
    stage = LADDER[config.model]
    recipe = stage.recipe
    epochs = config.epochs or epochs_for(recipe, config.profile)
    batch_size = config.batch_size or recipe.batch_size

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = configure_devices(config.mixed_precision)
    global_batch = batch_size * strategy.num_replicas_in_sync

    started_data = time.perf_counter()
    splits = make_splits(data, config.seed)
    log.info(
        "%d training digits + %d negatives, %d validation digits + %d negatives, in %.1f s",
        len(splits.x_train), len(splits.negatives_train), len(splits.x_validation),
        len(splits.negatives_validation), time.perf_counter() - started_data,
    )  # fmt: skip
    steps_per_epoch = -(-(len(splits.x_train) + len(splits.negatives_train)) // global_batch)
    train_ds = make_dataset(
        *with_negatives(splits.x_train, splits.y_train, splits.negatives_train),
        global_batch,
        shuffle_seed=config.seed,
    )
    # Digits only: the curves' validation accuracy is the digit accuracy.
    validation_ds = make_dataset(splits.x_validation, splits.y_validation, global_batch)
    with strategy.scope():
        model, trainer = compile_for_training(
            config.model, recipe, total_steps=steps_per_epoch * epochs, seed=config.seed
        )

    run_dir = None
    clock = EpochClock()
    # LearningRateLog before TensorBoard, which writes whatever the logs hold.
    callbacks: list[keras.callbacks.Callback] = [clock, LearningRateLog()]
    if config.logdir is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_dir = Path(config.logdir) / f"{config.model}-{config.profile}-{stamp}"
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir), histogram_freq=1))
    log.info(
        "training %s (%s, %d parameters) for %d epochs of %d steps, batch %d, on %s",
        config.model, stage.description, model.count_params(), epochs, steps_per_epoch,
        global_batch, ", ".join(_devices()),
    )  # fmt: skip

    started = time.perf_counter()
    history = trainer.fit(
        train_ds,
        epochs=epochs,
        validation_data=validation_ds,
        shuffle=False,  # the pipeline shuffles
        callbacks=callbacks,
        verbose=config.verbose,
    ).history
    seconds = time.perf_counter() - started

    def logits_of(images: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(to_model_input(images), batch_size=1000, verbose=0))

    validation_logits = logits_of(splits.x_validation)
    validation_negative_logits = logits_of(splits.negatives_validation)
    calibration = cal.calibrate(
        validation_logits, splits.y_validation.astype(np.int64), validation_negative_logits
    )
    test_logits = logits_of(data.x_test)
    probabilities = cal.digit_probabilities(test_logits, calibration.temperature)
    test_accuracy = float(np.mean(probabilities.argmax(axis=1) == data.y_test))
    test_negative_logits = logits_of(splits.negatives_test)
    judged = calibration_figures(
        calibration,
        test_logits,
        data.y_test.astype(np.int64),
        test_negative_logits,
        validation=(validation_logits, validation_negative_logits),
    )
    log.info(
        "test accuracy %.4f after %.1f s; ECE %.4f -> %.4f (temperature %.3f); "
        "not a digit: %.2f%% of test digits, %.2f%% of held-out negatives",
        test_accuracy, seconds, judged["ece_test_before"], judged["ece_test_after"],
        calibration.temperature, 100 * judged["false_rejection_rate_test"],
        100 * judged["rejection_rate_test"],
    )  # fmt: skip

    metadata: dict[str, Any] = {
        "model": config.model,
        "description": stage.description,
        "profile": config.profile,
        "test_accuracy": round(test_accuracy, 6),
        "validation_loss": round(float(history["val_loss"][-1]), 6),
        "validation_accuracy": round(float(history["val_accuracy"][-1]), 6),
        "train_accuracy": round(float(history["accuracy"][-1]), 6),
        "parameters": int(model.count_params()),
        "epochs": epochs,
        "batch_size": global_batch,
        "seed": config.seed,
        "mixed_precision": config.mixed_precision,
        "training_seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / epochs, 2),
        # Validation accuracy; includes each epoch's evaluation on the validation split.
        "seconds_to_99_percent": _rounded(
            seconds_to_reach(0.99, history["val_accuracy"], clock.elapsed)
        ),
        "calibration": judged,
        "history": {
            key: [round(float(value), 6) for value in values]
            for key, values in {**history, "elapsed_seconds": clock.elapsed}.items()
            if key in HISTORY_KEYS
        },
        "train_examples": len(splits.x_train) - splits.typed_digits - splits.coarse_digits,
        "typed_digit_examples": splits.typed_digits,
        "coarse_digit_examples": splits.coarse_digits,
        "validation_examples": len(splits.x_validation),
        "negative_examples": {
            "train": len(splits.negatives_train),
            "validation": len(splits.negatives_validation),
            "test": len(splits.negatives_test),
        },
        "test_examples": len(data.x_test),
        "data_sha256": data.sha256,
        "data_source": data.source,
        "devices": _devices(),
        "libraries": _library_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if config.min_accuracy is not None and test_accuracy < config.min_accuracy:
        raise AccuracyGateError(test_accuracy, config.min_accuracy)

    with tempfile.TemporaryDirectory(prefix="mnist-report-") as scratch:
        extra_files = {}
        if config.report:
            report = write_report(
                Path(scratch) / REPORT_FILENAME,
                f"{config.model} ({config.profile}, {epochs} epochs)",
                history,
                data.x_test,
                data.y_test,
                probabilities,
                cal.digit_probabilities(test_logits),
                cal.digit_scores(test_logits, calibration),
                cal.digit_scores(test_negative_logits, calibration),
            )
            extra_files[REPORT_FILENAME] = report
        export_dir = export_model(
            model,
            config.export_base,
            metadata,
            to_model_input(data.x_test[:WARMUP_IMAGES]),
            extra_files=extra_files,
            calibration=calibration,
        )
    log.info("exported %s (%s, %s)", export_dir, METADATA_FILENAME, REPORT_FILENAME)
    exported = json.loads((export_dir / METADATA_FILENAME).read_text())
    return TrainResult(export_dir, test_accuracy, exported, run_dir)

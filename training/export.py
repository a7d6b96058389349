"""Export a trained Keras model as a versioned, TF Serving-ready SavedModel.

Layout: <export_base>/mnist/<N>/{saved_model.pb, variables/, assets.extra/, metadata.json}.
The version appears atomically: everything is written to a hidden temporary directory
beside it and renamed into place, so TF Serving and the embedded backend, which poll
for new numeric directories, never see a half-written one.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from contract import (
    DIGIT_SCORE_KEY,
    INPUT_KEY,
    INPUT_SHAPE,
    METADATA_FILENAME,
    MODEL_NAME,
    NUM_CLASSES,
    OUTPUT_KEY,
    SIGNATURE_NAME,
    WARMUP_RELATIVE_PATH,
)
from training.calibration import Calibration


def model_dir(export_base: Path | str) -> Path:
    return Path(export_base) / MODEL_NAME


def existing_versions(export_base: Path | str) -> list[int]:
    base = model_dir(export_base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(export_base: Path | str) -> int:
    versions = existing_versions(export_base)
    return versions[-1] + 1 if versions else 1


def write_warmup_requests(path: Path, images: np.ndarray) -> None:
    """TF Serving replays these PredictionLog records at load time to warm the model up."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch_size in (1, 8, 32):
            batch = np.resize(images, (batch_size, *INPUT_SHAPE)).astype(np.float32)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=MODEL_NAME, signature_name=SIGNATURE_NAME),
            )
            request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def _write_saved_model(model: keras.Model, directory: Path, calibration: Calibration) -> None:
    # Keras 3's model.export() names the output "output_0"; an ExportArchive endpoint
    # returning a dict gives the signature exactly the contract's names. The calibration
    # is part of the graph, so TF Serving serves calibrated outputs too; the numpy
    # twins in training/calibration.py compute the same.
    archive = keras.export.ExportArchive()
    archive.track(model)
    temperature = tf.constant(calibration.temperature, tf.float32)
    scale = tf.constant(calibration.score_scale, tf.float32)
    offset = tf.constant(calibration.score_offset, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name=INPUT_KEY)])
    def serve(image):
        logits = tf.cast(model(image, training=False), tf.float32)
        digit_logits = logits[:, :NUM_CLASSES]
        log_odds = tf.reduce_logsumexp(digit_logits, axis=1) - logits[:, NUM_CLASSES]
        return {
            OUTPUT_KEY: tf.nn.softmax(digit_logits / temperature),
            DIGIT_SCORE_KEY: tf.sigmoid(scale * log_odds + offset),
        }

    archive.add_endpoint(SIGNATURE_NAME, serve)
    archive.write_out(str(directory), verbose=False)


def export_model(
    model: keras.Model,
    export_base: Path | str,
    metadata: dict[str, Any],
    warmup_images: np.ndarray,
    version: int | None = None,
    extra_files: Mapping[str, Path] | None = None,
    calibration: Calibration | None = None,
) -> Path:
    """Write `model` as the next version (or `version`) and return its directory.

    `extra_files` (name in the version directory -> source file), such as the training
    report, are copied in before the version becomes visible. `calibration` (none: the
    identity) is baked into the graph.
    """
    base = model_dir(export_base)
    base.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(export_base)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(f"model version {version} already exists at {final}")

    staging = Path(tempfile.mkdtemp(prefix=f".{version}-partial-", dir=base))
    # mkdtemp creates 0700; TF Serving often runs as another user and must read it.
    staging.chmod(0o755)
    try:
        _write_saved_model(model, staging, calibration or Calibration())
        write_warmup_requests(staging / WARMUP_RELATIVE_PATH, warmup_images)
        (staging / METADATA_FILENAME).write_text(
            json.dumps({"version": version, **metadata}, indent=2, sort_keys=True) + "\n"
        )
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / name)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final

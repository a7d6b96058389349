"""The tiny test model: the seed convnet trained for seconds on the committed sample and
exported through the real exporter. Real TensorFlow, a real SavedModel: good enough to
tell most digits apart, not good enough for accuracy figures."""

from pathlib import Path

import numpy as np


def sample_images(mnist_sample, count: int, start: int = 0, split: str = "test") -> np.ndarray:
    """MNIST sample images as the contract's float32 [n, 28, 28, 1] in [0, 1]."""
    from contract import PIXEL_MAX

    images = mnist_sample[f"x_{split}"][start : start + count]
    return (images[..., None] / PIXEL_MAX).astype(np.float32)


def export_tiny_model(
    export_base: Path, mnist_sample, *, seed: int, epochs: int, purpose: str = "tests"
) -> Path:
    """Train the seed convnet on the sample's training images and export it as the next
    version under export_base/mnist; returns that version's directory."""
    import keras

    from training.export import export_model
    from training.models import LADDER

    keras.utils.set_random_seed(seed)
    x = sample_images(mnist_sample, len(mnist_sample["x_train"]), split="train")
    model = LADDER["convnet"].build()
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, mnist_sample["y_train"], epochs=epochs, batch_size=64, verbose=0)
    return export_model(model, export_base, {"model": "convnet", "purpose": purpose}, x[:8])


def export_legacy_model(export_base: Path, version: int) -> Path:
    """A version as exported before digit_score existed: `serving_default` answers
    `probabilities` only (a fixed random softmax(dense(flatten(image))), not a trained
    model), with a metadata.json without calibration. Written staged, then renamed, as the
    exporter does; returns the version's directory."""
    import json

    import tensorflow as tf

    from contract import INPUT_KEY, INPUT_SHAPE, METADATA_FILENAME, NUM_CLASSES, OUTPUT_KEY

    pixels = int(np.prod(INPUT_SHAPE))
    rng = np.random.default_rng(version)

    class Legacy(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kernel = tf.Variable(rng.normal(0, 0.05, (pixels, NUM_CLASSES)), dtype=tf.float32)
            self.bias = tf.Variable(np.zeros(NUM_CLASSES), dtype=tf.float32)

        @tf.function(
            input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=INPUT_KEY)]
        )
        def serve(self, image):
            flat = tf.reshape(image, [-1, pixels])
            return {OUTPUT_KEY: tf.nn.softmax(tf.matmul(flat, self.kernel) + self.bias)}

    module = Legacy()
    model_dir = Path(export_base) / "mnist"
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".{version}-legacy-partial"
    tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve})
    (staging / METADATA_FILENAME).write_text(
        json.dumps({"version": version, "model": "legacy", "purpose": "tests"}) + "\n"
    )
    final = model_dir / str(version)
    staging.rename(final)
    return final

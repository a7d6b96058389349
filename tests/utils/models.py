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
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, mnist_sample["y_train"], epochs=epochs, batch_size=64, verbose=0)
    return export_model(model, export_base, {"model": "convnet", "purpose": purpose}, x[:8])

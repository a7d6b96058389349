"""MNIST loading and validation.

The source is a local npz in the Keras layout (`x_train`, `y_train`, `x_test`, `y_test`)
or, without one, `keras.datasets.mnist.load_data()`. Every failure becomes a `DataError`
carrying one sentence that tells the user what to do; the CLI prints it, nothing more.
"""

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE, NUM_CLASSES, PIXEL_MAX

SPLITS = ("x_train", "y_train", "x_test", "y_test")
_HINT = "pass --data PATH to a local mnist.npz in the Keras layout (or set MNIST_NPZ)"


class DataError(Exception):
    """MNIST could not be loaded; the message is one sentence for the user."""


@dataclass(frozen=True)
class MnistData:
    x_train: np.ndarray  # uint8 [N, 28, 28]
    y_train: np.ndarray  # uint8 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: str | None  # of the npz file; None when it came from somewhere we can't hash
    source: str

    @property
    def sizes(self) -> tuple[int, int]:
        return len(self.x_train), len(self.x_test)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate(arrays: dict[str, np.ndarray], source: str) -> None:
    """Refuse anything that is not MNIST-shaped: a wrong array here trains garbage silently."""
    for images, labels in (("x_train", "y_train"), ("x_test", "y_test")):
        x, y = arrays[images], arrays[labels]
        if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(
                f"{source}: {images} has shape {x.shape}, expected [N, {IMAGE_SIZE}, "
                f"{IMAGE_SIZE}]; {_HINT}."
            )
        if x.dtype != np.uint8:
            raise DataError(f"{source}: {images} has dtype {x.dtype}, expected uint8; {_HINT}.")
        if y.ndim != 1 or len(y) != len(x) or len(x) == 0:
            raise DataError(
                f"{source}: {labels} has shape {y.shape} for {len(x)} images in {images}; {_HINT}."
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: {labels} has dtype {y.dtype}, expected integers; {_HINT}.")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise DataError(
                f"{source}: {labels} holds values outside 0..{NUM_CLASSES - 1}; {_HINT}."
            )


def load_npz(path: Path | str) -> MnistData:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MNIST file {path} does not exist; {_HINT}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in SPLITS if key not in npz.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}; {_HINT}.")
            arrays = {key: npz[key] for key in SPLITS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable npz file ({error}); {_HINT}.") from error
    validate(arrays, str(path))
    return MnistData(**arrays, sha256=file_sha256(path), source=str(path.resolve()))


# Where and what keras.datasets.mnist.load_data() fetches; called through get_file so the
# cached file can be hashed and validated like a local one.
KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def download() -> MnistData:
    """Keras' own download, cached under ~/.keras/datasets (or $KERAS_HOME)."""
    import keras

    try:
        path = keras.utils.get_file(
            "mnist.npz", origin=KERAS_MNIST_URL, file_hash=KERAS_MNIST_SHA256
        )
    except Exception as error:  # urllib, ssl, socket, hash mismatch: no usable download
        raise DataError(
            f"MNIST could not be downloaded ({type(error).__name__}); {_HINT}."
        ) from error
    return load_npz(Path(path))


def load_mnist(path: Path | None) -> MnistData:
    """From `path` when given, else Keras' download."""
    return load_npz(Path(path)) if path is not None else download()


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> the contract's float32 [N, 28, 28, 1] in [0, 1]."""
    return (images[..., None] / PIXEL_MAX).astype(np.float32)

"""The job's data splits: training digits and negatives, a validation split carved from
the training images (digits and held-out-font negatives), test negatives.

No TensorFlow here, so bench/ladder.py's Keras-only path trains on the same splits.
"""

from dataclasses import dataclass

import numpy as np

from training.data import MnistData
from training.models import NOT_A_DIGIT
from training.negatives import (
    font_files,
    mnist_like_coarse_digits,
    mnist_like_negatives,
    mnist_like_typed_digits,
    split_fonts,
)

# Share of the training images held out for validation (curves, calibration).
VALIDATION_FRACTION = 0.1
# Negatives ("not a digit") per training digit; and, from held-out fonts, at most
# HELD_OUT_NEGATIVES each for validation and for the test figures (each costs the
# gateway's preprocessing: docs/training.md).
NEGATIVE_FRACTION = 0.15
HELD_OUT_NEGATIVES = 2_000
# Digits typed in the training fonts, per training digit: positives that keep the model
# from taking font rendering itself for "not a digit" (docs/training.md).
TYPED_DIGIT_FRACTION = 0.03
# Training digits shown again coarse (shrunk, enlarged, blurred or blocky), per training
# digit: positives that keep a thumbnail or a low-resolution scan from meaning "not a
# digit" (docs/training.md).
COARSE_DIGIT_FRACTION = 0.03
# Seeds of the three negative sets, offset from the run's seed so they never coincide.
NEGATIVE_SEEDS = {"train": 1_000, "validation": 2_000, "test": 3_000}
TYPED_DIGIT_SEED, COARSE_DIGIT_SEED = 4_000, 5_000


@dataclass(frozen=True)
class Splits:
    """Training digits (MNIST's, then typed ones, then coarse copies of MNIST's) and
    negatives, validation digits and negatives, test negatives (the test digits are
    data.x_test)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    negatives_train: np.ndarray
    negatives_validation: np.ndarray
    negatives_test: np.ndarray
    typed_digits: int  # of x_train, after MNIST's
    coarse_digits: int  # of x_train, at its end


def make_splits(data: MnistData, seed: int) -> Splits:
    """Carve the validation split from the training images, add typed digits to the
    training ones and coarse copies of some of them, and make the negatives: typed digits
    and training negatives from the training fonts, validation and test negatives from
    held-out fonts."""
    order = np.random.default_rng(seed).permutation(len(data.x_train))
    held_out = max(1, int(len(order) * VALIDATION_FRACTION))
    validation, training = order[:held_out], order[held_out:]
    digits, labels = data.x_train[training], data.y_train[training].astype(np.int64)
    train_fonts, held_out_fonts = split_fonts(font_files())

    def negatives(split: str, count: int, fonts) -> np.ndarray:
        images, _kinds = mnist_like_negatives(
            max(1, count), seed + NEGATIVE_SEEDS[split], fonts=fonts
        )
        return images

    typed, typed_labels = mnist_like_typed_digits(
        int(len(training) * TYPED_DIGIT_FRACTION), seed + TYPED_DIGIT_SEED, fonts=train_fonts
    )
    coarse, coarse_labels = mnist_like_coarse_digits(
        digits, labels, int(len(training) * COARSE_DIGIT_FRACTION), seed + COARSE_DIGIT_SEED
    )
    per_digit = NEGATIVE_FRACTION
    return Splits(
        x_train=np.concatenate([digits, typed, coarse]),
        y_train=np.concatenate([labels, typed_labels, coarse_labels]),
        x_validation=data.x_train[validation],
        y_validation=data.y_train[validation],
        negatives_train=negatives("train", int(len(training) * per_digit), train_fonts),
        negatives_validation=negatives(
            "validation", min(held_out, HELD_OUT_NEGATIVES), held_out_fonts
        ),
        negatives_test=negatives("test", min(len(data.x_test), HELD_OUT_NEGATIVES), held_out_fonts),
        typed_digits=len(typed),
        coarse_digits=len(coarse),
    )


def with_negatives(digits: np.ndarray, labels: np.ndarray, negatives: np.ndarray):
    images = np.concatenate([digits, negatives])
    labels = np.concatenate([labels.astype(np.int64), np.full(len(negatives), NOT_A_DIGIT)])
    return images, labels

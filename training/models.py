"""The model ladder of the "TensorFlow without a PhD" practical, plus our improved convnet.

Each builder returns an uncompiled Keras model whose input is named after the model
contract, so the exported signature key is stable. Every model ends in NUM_OUTPUTS
logits: the ten digits and NOT_A_DIGIT, the class of the negatives (training/negatives.py);
the export turns them into the contract's outputs (training/calibration.py).
"""

from collections.abc import Callable
from dataclasses import dataclass

import keras

from contract import INPUT_KEY, INPUT_SHAPE, NUM_CLASSES


@dataclass(frozen=True)
class TrainingRecipe:
    """How a ladder stage is trained: the seed's settings unless noted."""

    optimizer: str  # "sgd" or "adam"
    learning_rate: float
    batch_size: int
    fast_epochs: int
    best_epochs: int
    # Inverse-time decay rate per step, as the seed's `Adam(decay=0.001)`; 0 = none.
    lr_decay: float = 0.0
    # One-cycle-style cosine schedule with warm-up instead of inverse-time decay.
    cosine: bool = False
    augment: bool = False
    label_smoothing: float = 0.0


def _input() -> keras.KerasTensor:
    return keras.Input(shape=INPUT_SHAPE, name=INPUT_KEY)


# The training label of a negative example, after the ten digits.
NOT_A_DIGIT = NUM_CLASSES
NUM_OUTPUTS = NUM_CLASSES + 1


def _classifier(x: keras.KerasTensor) -> keras.KerasTensor:
    # float32 logits even under mixed precision: the calibrated softmax of the export
    # must sum to 1 exactly enough.
    return keras.layers.Dense(NUM_OUTPUTS, dtype="float32", name="logits")(x)


def softmax_1layer() -> keras.Model:
    inputs = _input()
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, _classifier(x), name="softmax_1layer")


def _dense_stack(activation: str, dropout: float, name: str) -> keras.Model:
    inputs = _input()
    x = keras.layers.Flatten()(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    for units in (200, 100, 60, 30):
        x = keras.layers.Dense(units, activation=activation)(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, _classifier(x), name=name)


def dense5_sigmoid() -> keras.Model:
    return _dense_stack("sigmoid", dropout=0.0, name="dense5_sigmoid")


def dense5_relu() -> keras.Model:
    return _dense_stack("relu", dropout=0.0, name="dense5_relu")


def dense5_dropout() -> keras.Model:
    return _dense_stack("relu", dropout=0.25, name="dense5_dropout")


def convnet() -> keras.Model:
    """The seed's 99% convnet: 6@6x6/1, 12@5x5/2, 24@4x4/2, dense 200, dropout 0.35."""
    inputs = _input()
    x = keras.layers.Conv2D(6, 6, strides=1, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(12, 5, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(24, 4, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(200, activation="relu")(x)
    x = keras.layers.Dropout(0.35)(x)
    return keras.Model(inputs, _classifier(x), name="convnet")


def _conv_bn(x: keras.KerasTensor, filters: int, kernel: int, strides: int = 1):
    # No bias: batch norm's beta replaces it.
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.Activation("relu")(x)


def convnet_bn() -> keras.Model:
    """Our improved convnet: two batch-normalised conv blocks, each ending in a strided 5x5
    conv instead of pooling, then a small dense layer; dropout between blocks.

    The layout of a well-known Kaggle MNIST design (32C3-32C3-32C5S2, 64C3-64C3-64C5S2,
    128) that reaches ~99.6-99.7% with light augmentation; trained here with warm-up +
    cosine decay and label smoothing.
    """
    inputs = _input()
    x = inputs
    for filters in (32, 64):
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 5, strides=2)
        x = keras.layers.Dropout(0.4)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.4)(x)
    return keras.Model(inputs, _classifier(x), name="convnet_bn")


def convnet_bn_lite() -> keras.Model:
    """The default: the same ideas at a fifth of the compute, to train in minutes on a
    laptop's CPU. Two batch-normalised 3x3 blocks of 24 and 48 filters, each ending in a
    strided conv instead of pooling, then dense 128 + BN; dropout between blocks, light
    enough for four epochs to fit (the validation split chose it: docs/training.md)."""
    inputs = _input()
    x = inputs
    for filters, dropout in ((24, 0.1), (48, 0.15)):
        x = _conv_bn(x, filters, 3)
        x = _conv_bn(x, filters, 3, strides=2)
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, _classifier(x), name="convnet_bn_lite")


@dataclass(frozen=True)
class LadderStage:
    build: Callable[[], keras.Model]
    recipe: TrainingRecipe
    description: str


LADDER: dict[str, LadderStage] = {
    "softmax": LadderStage(
        softmax_1layer,
        # The seed's SGD(0.005) barely moves on Keras' batch-mean loss (its codelab origin
        # scaled the loss up); 0.1 gives its ~92% in 10 epochs.
        TrainingRecipe("sgd", 0.1, 100, fast_epochs=10, best_epochs=50),
        "1-layer softmax (784->10), SGD",
    ),
    "dense5-sigmoid": LadderStage(
        dense5_sigmoid,
        # Sigmoids need a large step: 0.005 is still at chance (11%) after 10 epochs.
        TrainingRecipe("sgd", 0.5, 100, fast_epochs=10, best_epochs=50),
        "5 layers 200-100-60-30-10, sigmoid, SGD",
    ),
    "dense5-relu": LadderStage(
        dense5_relu,
        TrainingRecipe("adam", 0.003, 100, fast_epochs=10, best_epochs=30),
        "5 layers, ReLU, Adam",
    ),
    "dense5-dropout": LadderStage(
        dense5_dropout,
        TrainingRecipe("adam", 0.005, 100, fast_epochs=10, best_epochs=30),
        "5 layers, ReLU, dropout 0.25, Adam",
    ),
    "convnet": LadderStage(
        convnet,
        TrainingRecipe("adam", 0.003, 128, fast_epochs=6, best_epochs=15, lr_decay=0.001),
        "the seed's convnet 6-12-24 + dense 200, dropout 0.35, Adam with lr decay",
    ),
    "convnet-bn": LadderStage(
        convnet_bn,
        TrainingRecipe(
            "adam",
            0.003,
            128,
            fast_epochs=4,
            best_epochs=30,
            cosine=True,
            augment=True,
            label_smoothing=0.05,
        ),
        "our convnet: batch norm, augmentation (stroke width, shift/rotate/zoom), cosine schedule",
    ),
    "convnet-bn-lite": LadderStage(
        convnet_bn_lite,
        TrainingRecipe(
            "adam", 0.006, 128, fast_epochs=4, best_epochs=30, cosine=True, augment=True
        ),
        "the default: a light batch-normalised convnet, augmentation (stroke width, "
        "shift/rotate/zoom), cosine schedule",
    ),
}

DEFAULT_MODEL = "convnet-bn-lite"

"""Turn a ladder stage's `TrainingRecipe` into a compiled Keras model.

Pure Keras 3 (no TensorFlow import), so the same recipe also runs on another Keras
backend, which is how the ladder benchmark uses a GPU machine that has JAX but no
TensorFlow. Labels are one-hot everywhere because label smoothing needs them.
"""

import time
from typing import Literal

import keras

from contract import INPUT_KEY, INPUT_SHAPE
from training.augment import RandomAffine, RandomStrokeWidth
from training.models import LADDER, TrainingRecipe

Profile = Literal["fast", "best"]
PROFILES: tuple[Profile, ...] = ("fast", "best")

# Augmentation strength for the stages that use it: MNIST digits are already centred and
# size-normalised, so only small perturbations help; larger ones turn 1s into 7s.
SHIFT_PIXELS = 2.0
ROTATION_DEGREES = 10
ZOOM_FRACTION = 0.08
# Up to this share of a one-pixel dilation (or erosion) of the strokes.
STROKE_WIDTH_AMOUNT = 0.6
# Share of the run spent warming the learning rate up from zero (cosine recipes).
WARMUP_FRACTION = 0.05


def epochs_for(recipe: TrainingRecipe, profile: Profile) -> int:
    return recipe.fast_epochs if profile == "fast" else recipe.best_epochs


def learning_rate_schedule(recipe: TrainingRecipe, total_steps: int):
    """The recipe's schedule: constant, inverse-time decay (the seed) or warm-up + cosine."""
    if recipe.cosine:
        warmup = max(1, int(total_steps * WARMUP_FRACTION))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            warmup_target=recipe.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(1, total_steps - warmup),
            alpha=0.01,
        )
    if recipe.lr_decay:
        # Keras 2's `Adam(decay=d)` the seed used: lr / (1 + d * step).
        return keras.optimizers.schedules.InverseTimeDecay(
            recipe.learning_rate, decay_steps=1, decay_rate=recipe.lr_decay
        )
    return recipe.learning_rate


def optimizer_for(recipe: TrainingRecipe, total_steps: int) -> keras.optimizers.Optimizer:
    schedule = learning_rate_schedule(recipe, total_steps)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=schedule)
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")


def augmenter(seed: int) -> keras.Sequential:
    """Random stroke width, shifts, rotations and zoom; active only while training, on
    the device."""
    return keras.Sequential(
        [
            RandomStrokeWidth(STROKE_WIDTH_AMOUNT, seed=seed, dtype="float32"),
            RandomAffine(
                ROTATION_DEGREES, ZOOM_FRACTION, SHIFT_PIXELS, seed=seed + 1, dtype="float32"
            ),
        ],
        name="augment",
    )


def compile_for_training(
    name: str, recipe: TrainingRecipe, total_steps: int, seed: int
) -> tuple[keras.Model, keras.Model]:
    """(model to export, model to fit). They share weights; the second adds augmentation."""
    model = LADDER[name].build()
    trainer = model
    if recipe.augment:
        inputs = keras.Input(shape=INPUT_SHAPE, name=INPUT_KEY)
        trainer = keras.Model(inputs, model(augmenter(seed)(inputs)), name=f"{model.name}_train")
    trainer.compile(
        optimizer=optimizer_for(recipe, total_steps),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=recipe.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model, trainer


class EpochClock(keras.callbacks.Callback):
    """Wall-clock seconds since the start of fit() at the end of each epoch."""

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.elapsed: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.elapsed.append(time.perf_counter() - self.started)


class LearningRateLog(keras.callbacks.Callback):
    """Put the scheduled learning rate into each epoch's logs (and so into TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


def seconds_to_reach(target: float, accuracies: list[float], elapsed: list[float]) -> float | None:
    """Wall-clock time at the end of the first epoch whose test accuracy reached `target`."""
    for accuracy, seconds in zip(accuracies, elapsed, strict=True):
        if accuracy >= target:
            return seconds
    return None

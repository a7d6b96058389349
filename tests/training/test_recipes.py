"""Learning-rate schedules and augmentation behave as the recipes say."""

import keras
import numpy as np
import pytest

from contract import INPUT_KEY
from training.data import to_model_input
from training.models import LADDER
from training.recipes import (
    augmenter,
    compile_for_training,
    epochs_for,
    learning_rate_schedule,
)


def test_seed_convnet_halves_its_learning_rate_after_a_thousand_steps():
    recipe = LADDER["convnet"].recipe
    schedule = learning_rate_schedule(recipe, total_steps=5000)
    assert float(schedule(0)) == pytest.approx(0.003)
    assert float(schedule(1000)) == pytest.approx(0.0015)


def test_cosine_schedule_warms_up_then_decays_to_a_small_floor():
    recipe = LADDER["convnet-bn"].recipe
    total = 1000
    schedule = learning_rate_schedule(recipe, total_steps=total)
    rates = np.array([float(schedule(step)) for step in range(0, total + 1, 10)])
    peak = int(np.argmax(rates))
    assert rates[0] == pytest.approx(0.0, abs=1e-9)
    assert rates[peak] == pytest.approx(recipe.learning_rate, rel=0.01)
    assert peak * 10 <= 0.1 * total  # the warm-up is short
    assert np.all(np.diff(rates[:peak + 1]) > 0)  # fmt: skip
    assert np.all(np.diff(rates[peak:]) <= 1e-12)
    assert rates[-1] < 0.02 * recipe.learning_rate


def test_stages_without_decay_keep_a_constant_rate():
    assert (
        learning_rate_schedule(LADDER["softmax"].recipe, 100)
        == LADDER["softmax"].recipe.learning_rate
    )


def test_profiles_pick_the_recipe_epochs():
    recipe = LADDER["convnet"].recipe
    assert epochs_for(recipe, "fast") == recipe.fast_epochs
    assert epochs_for(recipe, "best") == recipe.best_epochs > recipe.fast_epochs


def test_augmentation_perturbs_only_while_training(mnist_sample):
    images = to_model_input(mnist_sample["x_test"][:16])
    augment = augmenter(seed=1)
    unchanged = keras.ops.convert_to_numpy(augment(images, training=False))
    np.testing.assert_array_equal(unchanged, images)
    changed = keras.ops.convert_to_numpy(augment(images, training=True))
    assert changed.shape == images.shape
    assert not np.allclose(changed, images)
    # Small perturbations: the digit keeps its ink within what a thinner or thicker pen
    # gives (the stroke-width step) and stays in range.
    assert changed.min() >= -1e-6
    assert changed.max() <= 1 + 1e-6
    ratio = changed.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert np.all((ratio > 0.35) & (ratio < 1.8))
    assert ratio.min() < 0.8, "no stroke thinned"
    assert ratio.max() > 1.2, "no stroke thickened"


def test_exported_model_carries_no_augmentation_layers():
    recipe = LADDER["convnet-bn"].recipe
    model, trainer = compile_for_training("convnet-bn", recipe, total_steps=10, seed=0)
    assert trainer is not model
    assert "augment" in [layer.name for layer in trainer.layers]
    assert "augment" not in [layer.name for layer in model.layers]
    assert model.inputs[0].name == INPUT_KEY
    # Shared weights: training the trainer trains the exported model.
    assert {id(w) for w in model.weights} <= {id(w) for w in trainer.weights}


def test_stages_without_augmentation_train_the_exported_model_itself():
    recipe = LADDER["convnet"].recipe
    model, trainer = compile_for_training("convnet", recipe, total_steps=10, seed=0)
    assert trainer is model


def test_affine_augmentation_without_range_is_the_identity(mnist_sample):
    from training.augment import RandomAffine

    images = to_model_input(mnist_sample["x_test"][:8])
    still = RandomAffine(degrees=0, zoom=0, shift=0, seed=0)(images, training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(still), images, atol=1e-5)


def test_affine_augmentation_moves_digits_only_a_little(mnist_sample):
    images = to_model_input(mnist_sample["x_test"][:64])
    moved = keras.ops.convert_to_numpy(augmenter(seed=3)(images, training=True))
    grid = np.arange(28)

    def centre_of_mass(batch):
        mass = batch[..., 0].sum(axis=(1, 2))
        rows = (batch[..., 0].sum(axis=2) * grid).sum(axis=1) / mass
        cols = (batch[..., 0].sum(axis=1) * grid).sum(axis=1) / mass
        return np.stack([rows, cols], axis=1)

    shift = np.abs(centre_of_mass(moved) - centre_of_mass(images))
    assert shift.max() < 4.0  # 2 px shift plus rotation/zoom about the centre
    assert shift.mean() > 0.3  # and it does move them

"""training/calibration.py: the fits on held-out data, and the exported graph computing
exactly what the numpy twins compute."""

import numpy as np
import pytest

from contract import DIGIT_SCORE_KEY, INPUT_SHAPE, OUTPUT_KEY
from training import calibration as cal


def _overconfident(rng, count: int, temperature: float):
    """Logits whose labels are drawn from softmax(logits / temperature): the true
    temperature is known."""
    logits = rng.normal(size=(count, 11)) * 4
    probabilities = cal.digit_probabilities(logits, temperature).astype(np.float64)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in probabilities])
    return logits, labels


def test_the_fitted_temperature_recovers_the_true_one_and_lowers_ece():
    rng = np.random.default_rng(0)
    logits, labels = _overconfident(rng, 20_000, temperature=2.5)
    temperature = cal.fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.05)
    before = cal.expected_calibration_error(cal.digit_probabilities(logits), labels)
    after = cal.expected_calibration_error(cal.digit_probabilities(logits, temperature), labels)
    assert before > 0.1
    assert after < 0.02


def test_the_digit_score_separates_digits_from_negatives_at_the_fixed_threshold():
    rng = np.random.default_rng(1)
    digits = rng.normal(size=(2_000, 11))
    digits[:, 3] += 6  # confident digits
    negatives = rng.normal(size=(500, 11))
    negatives[:, 10] += 3  # the "not a digit" class, less sure
    fitted = cal.calibrate(digits, np.full(2_000, 3), negatives)
    rates = cal.rejection_rates(
        cal.digit_scores(digits, fitted), cal.digit_scores(negatives, fitted)
    )
    assert rates["false_rejection_rate"] < 0.01
    assert rates["rejection_rate"] > 0.95
    assert fitted.score_scale > 0


def test_the_score_is_calibrated_for_an_even_prior():
    """Log-odds drawn from two overlapping classes: among images scored ~p, a share ~p
    are digits when digits and non-digits are equally many."""
    rng = np.random.default_rng(2)
    log_odds = np.concatenate([rng.normal(2, 1.5, 20_000), rng.normal(-2, 1.5, 20_000)])
    is_digit = np.concatenate([np.ones(20_000), np.zeros(20_000)])
    scale, offset = cal.fit_score(log_odds, is_digit)
    scores = 1 / (1 + np.exp(-(scale * log_odds + offset)))
    for low in (0.1, 0.3, 0.5, 0.7):
        chosen = (scores >= low) & (scores < low + 0.1)
        assert is_digit[chosen].mean() == pytest.approx(scores[chosen].mean(), abs=0.03)


def test_the_operating_point_refuses_at_most_the_chosen_share_of_validation_digits():
    """Overlapping classes: the balanced fit alone would refuse about 9% of the digits;
    calibrate() shifts the score until at most MAX_FALSE_REJECTION of them are refused,
    and leaves a well-separated fit where it is."""
    rng = np.random.default_rng(4)
    digits = rng.normal(size=(4_000, 11))
    digits[:, 3] += 2
    negatives = rng.normal(size=(4_000, 11))
    negatives[:, 10] += 2
    labels = np.full(4_000, 3)
    balanced = cal.fit_score(
        np.concatenate([cal.digit_log_odds(digits), cal.digit_log_odds(negatives)]),
        np.concatenate([np.ones(4_000), np.zeros(4_000)]),
    )
    fitted = cal.calibrate(digits, labels, negatives)
    assert fitted.score_offset > balanced[1]
    refused = cal.rejection_rates(
        cal.digit_scores(digits, cal.Calibration(fitted.temperature, *balanced)),
        cal.digit_scores(negatives, fitted),
    )["false_rejection_rate"]
    assert refused > 0.05
    rates = cal.rejection_rates(
        cal.digit_scores(digits, fitted), cal.digit_scores(negatives, fitted)
    )
    assert rates["false_rejection_rate"] <= cal.MAX_FALSE_REJECTION
    assert rates["rejection_rate"] > 0.3  # it still refuses a share of the negatives

    separated = digits.copy()
    separated[:, 3] += 8
    apart = negatives - np.eye(11)[3] * 8
    clean = cal.calibrate(separated, labels, apart)
    assert clean.score_offset == pytest.approx(
        cal.fit_score(
            np.concatenate([cal.digit_log_odds(separated), cal.digit_log_odds(apart)]),
            np.concatenate([np.ones(4_000), np.zeros(4_000)]),
        )[1]
    )


def test_ece_of_a_perfectly_calibrated_model_is_small_and_of_a_wrong_one_large():
    rng = np.random.default_rng(3)
    logits, labels = _overconfident(rng, 20_000, temperature=1.0)
    assert cal.expected_calibration_error(cal.digit_probabilities(logits), labels) < 0.02
    always_wrong = np.eye(10)[(labels + 1) % 10]
    assert cal.expected_calibration_error(always_wrong, labels) == pytest.approx(1.0)


def test_the_exported_graph_serves_the_calibrated_outputs(tmp_path):
    """The SavedModel's probabilities and digit_score equal the numpy twins' for the
    same logits and calibration: what TF Serving serves is what training measured."""
    import keras
    import tensorflow as tf

    from training.export import export_model
    from training.models import LADDER

    keras.utils.set_random_seed(0)
    model = LADDER["softmax"].build()
    images = np.random.default_rng(4).random((16, *INPUT_SHAPE), dtype=np.float32)
    fitted = cal.Calibration(temperature=1.7, score_scale=0.8, score_offset=-0.3)
    export_dir = export_model(model, tmp_path, {"model": "softmax"}, images[:2], calibration=fitted)

    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        image=tf.constant(images)
    )
    logits = np.asarray(model(images))
    np.testing.assert_allclose(
        served[OUTPUT_KEY].numpy(), cal.digit_probabilities(logits, 1.7), atol=1e-6
    )
    np.testing.assert_allclose(
        served[DIGIT_SCORE_KEY].numpy(), cal.digit_scores(logits, fitted), atol=1e-6
    )
    assert served[DIGIT_SCORE_KEY].shape == (16,)

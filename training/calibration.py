"""Calibration: from the network's 11 logits to the two outputs the contract serves.

The network scores the ten digits and an eleventh class, "not a digit", learnt from the
negatives of training/negatives.py. The export turns the logits into
- `probabilities`: a softmax over the ten digit logits divided by a temperature, fitted
  on held-out digits so that confidence means what it says (temperature scaling);
- `digit_score`: the probability that the image holds a digit at all, a logistic
  function of the digit-vs-not log-odds (Platt scaling) fitted on held-out digits and
  negatives weighted equally. For an upload as likely to be a digit as not, the score is
  calibrated, and the Bayes decision is contract.DIGIT_THRESHOLD (0.5) for every model,
  so no per-model threshold has to travel to the backends. Where that balanced point
  refuses more than MAX_FALSE_REJECTION of the validation digits, the score is shifted
  until it does not: a refused digit costs a user more than a letter read as a digit,
  and the score is then calibrated for a prior leaning that much towards digits.

Everything is fitted on validation data carved from the training split, never on the test
set, which only measures the result. Pure numpy: the fits are two- and one-parameter
problems.
"""

from dataclasses import asdict, dataclass

import numpy as np

from contract import DIGIT_THRESHOLD, NUM_CLASSES

RELIABILITY_BINS = 15
# The operating point, chosen on validation digits: the score is shifted, where the
# balanced fit refuses more, so that at most this share of them falls below the
# threshold (docs/training.md).
MAX_FALSE_REJECTION = 0.003


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    score_scale: float = 1.0
    score_offset: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 6) for key, value in asdict(self).items()}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def digit_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float [N, 11] logits -> float32 [N, 10] digit probabilities at `temperature`."""
    return np.exp(_log_softmax(logits[:, :NUM_CLASSES].astype(np.float64) / temperature)).astype(
        np.float32
    )


def digit_log_odds(logits: np.ndarray) -> np.ndarray:
    """log P(some digit) - log P(not a digit) under the 11-way softmax."""
    z = logits.astype(np.float64)
    digits = z[:, :NUM_CLASSES]
    peak = digits.max(axis=1)
    lse = peak + np.log(np.exp(digits - peak[:, None]).sum(axis=1))
    return lse - z[:, NUM_CLASSES]


def digit_scores(logits: np.ndarray, calibration: Calibration) -> np.ndarray:
    """float32 [N] digit_score, as the exported graph computes it."""
    x = calibration.score_scale * digit_log_odds(logits) + calibration.score_offset
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out digits' labels
    (golden-section search on log T: the NLL is unimodal in T)."""
    z = logits[:, :NUM_CLASSES].astype(np.float64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(z / np.exp(log_t))[rows, labels].mean())

    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def fit_score(log_odds: np.ndarray, is_digit: np.ndarray) -> tuple[float, float]:
    """(scale, offset) of a logistic regression of is_digit on the log-odds, the two
    classes weighted equally (Newton's method; a little ridge keeps a separable
    validation set from sending the scale to infinity)."""
    x = log_odds.astype(np.float64)
    y = is_digit.astype(np.float64)
    positives = max(y.sum(), 1.0)
    negatives = max(len(y) - y.sum(), 1.0)
    weights = np.where(y > 0, 0.5 / positives, 0.5 / negatives)
    design = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.array([1.0, 0.0])
    ridge = np.diag([1e-4, 0.0])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(design @ theta, -500, 500)))
        gradient = design.T @ (weights * (p - y)) + ridge @ theta
        hessian = (design * (weights * p * (1 - p))[:, None]).T @ design + ridge
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def calibrate(
    digit_logits: np.ndarray, digit_labels: np.ndarray, negative_logits: np.ndarray
) -> Calibration:
    """Fit both calibrations on held-out validation data, and the operating point."""
    temperature = fit_temperature(digit_logits, digit_labels)
    digits_log_odds = digit_log_odds(digit_logits)
    log_odds = np.concatenate([digits_log_odds, digit_log_odds(negative_logits)])
    is_digit = np.concatenate([np.ones(len(digit_logits)), np.zeros(len(negative_logits))])
    scale, offset = fit_score(log_odds, is_digit)
    # DIGIT_THRESHOLD is where scale * log_odds + offset crosses its logit.
    boundary = np.log(DIGIT_THRESHOLD / (1 - DIGIT_THRESHOLD))
    margin = np.quantile(scale * digits_log_odds + offset, MAX_FALSE_REJECTION)
    offset += max(0.0, float(boundary - margin))
    return Calibration(temperature, scale, offset)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy, in equal-width
    confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    error = 0.0
    for b in range(RELIABILITY_BINS):
        in_bin = bins == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def reliability(probabilities: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) for each non-empty confidence bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    return [
        (
            float(confidence[bins == b].mean()),
            float(correct[bins == b].mean()),
            int((bins == b).sum()),
        )
        for b in range(RELIABILITY_BINS)
        if (bins == b).any()
    ]


def rejection_rates(
    digit_scores_of_digits: np.ndarray,
    digit_scores_of_negatives: np.ndarray,
    threshold: float = DIGIT_THRESHOLD,
) -> dict[str, float]:
    """At `threshold`: the share of digits wrongly judged "not a digit" (false
    rejections) and the share of non-digits rightly judged so (rejections)."""
    return {
        "false_rejection_rate": float(np.mean(digit_scores_of_digits < threshold)),
        "rejection_rate": float(np.mean(digit_scores_of_negatives < threshold)),
    }

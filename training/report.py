"""The training report: one PNG a person can look at instead of reading logs.

Loss and accuracy per epoch (train vs validation), the test confusion matrix, the
reliability diagram of the test digits before and after calibration, the rejection
trade-off (digits wrongly rejected against non-digits rejected, as the threshold moves)
and a grid of misclassified test digits with their true and predicted labels.
"""

from pathlib import Path

import numpy as np

from contract import DIGIT_THRESHOLD, NUM_CLASSES
from training.calibration import reliability

MAX_MISTAKES_SHOWN = 40
MISTAKE_COLUMNS = 10


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return counts


def write_report(
    path: Path,
    title: str,
    history: dict[str, list[float]],
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    uncalibrated: np.ndarray,
    digit_scores: np.ndarray,
    negative_scores: np.ndarray,
) -> Path:
    """Draw the report for test `images` (uint8 [N, 28, 28]) and the model's outputs:
    calibrated and `uncalibrated` probabilities, the digit_score of the test digits and
    of held-out negatives."""
    # Agg: no display on training machines, and no global backend switch for the caller.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    # The most confident mistakes first: they are the interesting ones.
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:MAX_MISTAKES_SHOWN]
    accuracy = float(np.mean(predicted == labels))

    figure = Figure(figsize=(24, 13), layout="constrained")
    figure.suptitle(f"{title} — test accuracy {accuracy:.2%} ({len(labels)} images)")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1.1])
    loss_axes, accuracy_axes, confusion_axes, reliability_axes, rejection_axes = top.subplots(1, 5)

    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                axes.plot(epochs, history[key], marker="o", label=label)
        axes.set_title(metric)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()

    counts = confusion_matrix(labels, predicted)
    # Log scale so the off-diagonal handful stays visible next to ~1,000 on the diagonal.
    confusion_axes.imshow(np.log1p(counts), cmap="Blues")
    for true in range(NUM_CLASSES):
        for guess in range(NUM_CLASSES):
            if counts[true, guess]:
                colour = "white" if true == guess else "black"
                confusion_axes.text(
                    guess, true, counts[true, guess], ha="center", va="center", fontsize=7,
                    color=colour,
                )  # fmt: skip
    confusion_axes.set_xticks(range(NUM_CLASSES))
    confusion_axes.set_yticks(range(NUM_CLASSES))
    confusion_axes.set_xlabel("predicted")
    confusion_axes.set_ylabel("true")
    confusion_axes.set_title("confusion matrix (test)")

    for outputs, name in ((uncalibrated, "before"), (probabilities, "after")):
        bins = reliability(outputs, labels)
        reliability_axes.plot(
            [b[0] for b in bins], [b[1] for b in bins], marker="o", label=f"{name} calibration"
        )
    reliability_axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    reliability_axes.set_xlabel("confidence")
    reliability_axes.set_ylabel("accuracy")
    reliability_axes.set_title("reliability (test digits)")
    reliability_axes.grid(alpha=0.3)
    reliability_axes.legend()

    thresholds = np.linspace(0, 1, 201)
    false_rejection = [np.mean(digit_scores < t) for t in thresholds]
    rejection = [np.mean(negative_scores < t) for t in thresholds]
    rejection_axes.plot(false_rejection, rejection)
    at = thresholds.searchsorted(DIGIT_THRESHOLD)
    rejection_axes.plot(
        false_rejection[at], rejection[at], "o", label=f"threshold {DIGIT_THRESHOLD}"
    )
    rejection_axes.set_xscale("symlog", linthresh=1e-3)
    rejection_axes.set_xlabel("test digits rejected")
    rejection_axes.set_ylabel("held-out non-digits rejected")
    rejection_axes.set_title("rejection trade-off")
    rejection_axes.grid(alpha=0.3)
    rejection_axes.legend()

    rows = max(1, -(-len(wrong) // MISTAKE_COLUMNS))
    bottom.suptitle(
        f"{np.count_nonzero(predicted != labels)} misclassified test digits"
        f" (most confident first, up to {MAX_MISTAKES_SHOWN}): true → predicted (confidence)"
    )
    grid = bottom.subplots(rows, MISTAKE_COLUMNS, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, wrong, strict=False):
        axes.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        guess = predicted[index]
        axes.set_title(f"{labels[index]} → {guess} ({probabilities[index, guess]:.2f})", fontsize=9)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path

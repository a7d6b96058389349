"""The model contract's checks, one place for every side that serves a model: the
embedded backend and the TF Serving backends check a signature when they load or
describe a model, and every backend (the batcher too) checks each answer."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from contract import (
    DIGIT_SCORE_KEY,
    INPUT_KEY,
    INPUT_SHAPE,
    NUM_CLASSES,
    OUTPUT_KEY,
    SIGNATURE_NAME,
)

# A float32 softmax row sums to 1 within a few ulps; TF Serving's JSON keeps them.
ROW_SUM_TOLERANCE = 1e-3


def signature_problems(signature_def_map: Mapping[str, Any]) -> list[str]:
    """Differences between a SignatureDefMap (proto JSON, field names as in the proto:
    what TF Serving's metadata gives, and json_format.MessageToDict of a SavedModel's)
    and the contract; empty when the model fits."""
    signature = signature_def_map.get("signature_def", {}).get(SIGNATURE_NAME)
    if signature is None:
        return [f"no signature {SIGNATURE_NAME!r}"]
    problems = []
    expected = {
        ("inputs", INPUT_KEY): [-1, *INPUT_SHAPE],
        ("outputs", OUTPUT_KEY): [-1, NUM_CLASSES],
        ("outputs", DIGIT_SCORE_KEY): [-1],
    }
    for (side, key), shape in expected.items():
        tensors = signature.get(side, {})
        info = tensors.get(key)
        if info is None:
            if key != DIGIT_SCORE_KEY:  # optional: older versions lack it
                problems.append(f"{side} has no {key!r} (it has {sorted(tensors)})")
            continue
        if info.get("dtype") != "DT_FLOAT":
            problems.append(f"{key!r} is {info.get('dtype')}, not DT_FLOAT")
        dims = [int(d.get("size", 0)) for d in info.get("tensor_shape", {}).get("dim", [])]
        if dims != shape:
            problems.append(f"{key!r} has shape {dims}, not {shape}")
    return problems


def serves_digit_score(signature_def_map: Mapping[str, Any]) -> bool:
    """Whether a contract-fitting SignatureDefMap (as for signature_problems) also
    answers digit_score; False for versions exported before it existed."""
    signature = signature_def_map.get("signature_def", {}).get(SIGNATURE_NAME, {})
    return DIGIT_SCORE_KEY in signature.get("outputs", {})


def digit_score_problem(scores: np.ndarray, batch_size: int) -> str | None:
    """What is wrong with a model's digit_score for `batch_size` images, or None: one
    value in [0, 1] per image (a NaN fails both comparisons)."""
    if scores.shape != (batch_size,):
        shape = list(scores.shape)
        return f"digit_score has shape {shape} for {batch_size} images, not [{batch_size}]"
    if batch_size and not (scores.min() >= 0 and scores.max() <= 1):
        return "a digit_score is not a probability in [0, 1]"
    return None


def probability_problem(probabilities: np.ndarray, batch_size: int) -> str | None:
    """What is wrong with a model's answer for `batch_size` images, or None: the contract
    is one row of NUM_CLASSES finite, non-negative values summing to 1 per image."""
    if probabilities.shape != (batch_size, NUM_CLASSES):
        return (
            f"shape {list(probabilities.shape)} for {batch_size} images, "
            f"not [{batch_size}, {NUM_CLASSES}]"
        )
    # Checked on every answer, so the common case costs two reductions: no value below 0
    # and every row summing to 1 imply finite values (a NaN fails either comparison).
    row_sums = probabilities.sum(axis=1)
    if probabilities.min() >= 0 and np.abs(row_sums - 1).max() <= ROW_SUM_TOLERANCE:
        return None
    if not np.isfinite(probabilities).all():
        return "a probability is not finite"
    return "a row is not a probability distribution (non-negative, summing to 1)"

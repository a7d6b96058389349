"""Stage 4: ink map -> the digit cropped, thickened if a hairline, fitted into MNIST's
20-pixel box and placed in the 28x28 frame by its centre of mass, as MNIST was made."""

import numpy as np
from PIL import Image

from contract import DIGIT_BOX, IMAGE_SIZE
from serving.errors import NoInk
from serving.preprocessing import placement_kernels as kernels
from serving.preprocessing.ink import NOISE_FLOOR
from serving.preprocessing.kernels import (
    bounding_box,
    digit_box,
    pieces,
    square_extreme,
    stroke_width,
)

# MNIST digits have their centre of mass at pixel index 14.0 (row and column; measured
# on the test set: 13.99, 14.01), not at the geometric centre 13.5.
MNIST_CENTRE_OF_MASS = 14.0
# The box is decided at the noise floor, then grows over the faint rim just outside it
# (MNIST's own anti-aliased edges).
FAINT_RIM_PIXELS = 1
# Stroke width in MNIST's 20-pixel box is about 2-3 pixels; hairlines (typed digits in
# thin fonts, pen strokes scanned at high resolution) shrink to well under one pixel
# and fade out when anti-aliased, so they are thickened to this width first.
MIN_STROKE_WIDTH_IN_BOX = 1.8
TARGET_STROKE_WIDTH_IN_BOX = 2.4
# Working resolution (in multiples of the 20-pixel box) for measuring and thickening.
WORK_SCALE = 4


def place(ink: np.ndarray) -> np.ndarray:
    """Ink map of any size -> float32 [28, 28], the digit in MNIST's box and position."""
    top, bottom, left, right = bounding_box(ink, NOISE_FLOOR)
    if top < 0:
        raise NoInk("the image is uniform: no digit found")
    # Specks away from the digit (grain, dust) do not widen its box.
    top, bottom, left, right = digit_box(pieces(ink, NOISE_FLOOR)) or (top, bottom, left, right)
    top, bottom, left, right = kernels.grow_over_faint_edges(
        ink, top, bottom, left, right, FAINT_RIM_PIXELS
    )
    digit = _thicken(ink[top:bottom, left:right], DIGIT_BOX)
    digit = _resize(digit, *_fit(*digit.shape, DIGIT_BOX))
    # The box is kept whole inside the frame, as MNIST does.
    frame = kernels.place_by_centre_of_mass(digit, IMAGE_SIZE, MNIST_CENTRE_OF_MASS)
    if frame is None:
        raise NoInk("the image is uniform: no digit found")
    return frame


def _resize(ink: np.ndarray, height: int, width: int) -> np.ndarray:
    if ink.shape == (height, width):
        return ink
    image = Image.fromarray(ink.astype(np.float32), mode="F")
    resized = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _fit(height: int, width: int, box: int) -> tuple[int, int]:
    scale = box / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _thicken(ink: np.ndarray, box: int) -> np.ndarray:
    """Dilate hairline strokes so they survive the shrink to the 20-pixel box."""
    height, width = ink.shape
    work = box * WORK_SCALE
    if max(height, width) > work:
        ink = _resize(ink, *_fit(height, width, work))
    pixels_per_box_pixel = max(ink.shape) / box
    width_in_box = stroke_width(ink) / pixels_per_box_pixel
    if width_in_box >= MIN_STROKE_WIDTH_IN_BOX:
        return ink
    # Shrinking spread a hairline over a fraction of a pixel: give it back its full ink
    # (the typical stroke pixel becomes 1), so it grows evenly instead of as grey blobs.
    ink = kernels.stretch_to_percentile(ink, 90)
    width_in_box = stroke_width(ink) / pixels_per_box_pixel
    if width_in_box >= MIN_STROKE_WIDTH_IN_BOX:
        return ink
    grow = (TARGET_STROKE_WIDTH_IN_BOX - width_in_box) * pixels_per_box_pixel
    size = 2 * max(1, round(grow / 2)) + 1  # odd filter size adding ~`grow` pixels
    padded = np.pad(ink, size)  # room for the strokes to grow at the edges
    grown = square_extreme(padded, size, maximum=True)  # PIL's MaxFilter(size)
    top, bottom, left, right = bounding_box(grown, 0.0)
    return grown[top:bottom, left:right]

"""The compiled pixel loops of the placement stage (serving.preprocessing.placement)."""

import numpy as np

from serving.preprocessing.kernels import F32, kernel


@kernel
def _any_ink(ink, top, bottom, left, right):
    for y in range(top, bottom):
        for x in range(left, right):
            if ink[y, x] != 0:
                return True
    return False


@kernel
def grow_over_faint_edges(ink, top, bottom, left, right, rings):
    """Widen the box by a ring at a time on each side where the next row or column out
    holds any ink (> 0, however faint): top, bottom, left, right, in that order."""
    height, width = ink.shape
    for _ in range(rings):
        if top > 0 and _any_ink(ink, top - 1, top, left, right):
            top -= 1
        if bottom < height and _any_ink(ink, bottom, bottom + 1, left, right):
            bottom += 1
        if left > 0 and _any_ink(ink, top, bottom, left - 1, left):
            left -= 1
        if right < width and _any_ink(ink, top, bottom, right, right + 1):
            right += 1
    return top, bottom, left, right


@kernel
def stretch_to_percentile(ink, q):
    """np.clip(ink / np.percentile(ink[ink > 0], q), 0, 1): the typical ink pixel made 1."""
    values = ink.ravel()
    scale = F32(np.percentile(values[values > 0], q))
    stretched = np.empty(ink.shape, F32)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            stretched[y, x] = min(max(ink[y, x] / scale, F32(0.0)), F32(1.0))
    return stretched


@kernel
def place_by_centre_of_mass(digit, size, centre):
    """digit / digit.max() in a size x size frame of zeros, its centre of mass rounded
    onto `centre` (np.rint), the whole digit kept inside; None for a digit without ink."""
    height, width = digit.shape
    if height > size or width > size:  # compiled code checks no bounds: we do
        raise ValueError("the digit is larger than the frame")
    peak = digit.max()
    if not peak > 0:
        return None
    scaled = digit / peak
    total = 0.0
    row_moment = 0.0
    col_moment = 0.0
    for y in range(height):
        for x in range(width):
            total += scaled[y, x]
            row_moment += y * np.float64(scaled[y, x])
            col_moment += x * np.float64(scaled[y, x])
    top = min(max(int(np.rint(centre - row_moment / total)), 0), size - height)
    left = min(max(int(np.rint(centre - col_moment / total)), 0), size - width)
    frame = np.zeros((size, size), F32)
    frame[top : top + height, left : left + width] = scaled
    return frame

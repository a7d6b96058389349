"""The pixel loops of serving.preprocessing, compiled with numba.

Written as numpy expressions, a 28x28 upload costs ~150 numpy calls whose fixed overhead
(~1 us each, more inside a busy server) outweighs their arithmetic: these loops do the
same work in one pass each. Each kernel computes exactly what the numpy expression named
in its docstring computes, bit for bit: the same float32 operations in the same order,
and numpy 2's rule that a Python float meeting a float32 array is a float32 (NEP 50).
tests/serving/preprocessing/test_preprocessing_kernels.py holds each kernel to its
expression and the whole pipeline to the numpy one these loops replaced.

Compiled on first call (~8 s for all of them on this project's 2-core machine) and
cached on disk (~0.3 s to load): in NUMBA_CACHE_DIR where set, else __pycache__ beside
this file, else the user's cache directory. serving.preprocessing.warm_up runs them all
before the gateway reports ready. They release the GIL: large uploads are preprocessed
in a thread pool beside the event loop.
"""

import math

import numpy as np
from numba import njit


def kernel(function):
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:
        # No writable cache directory anywhere (numba refuses cache=True then): the
        # kernels are compiled in memory at each start instead.
        return njit(nogil=True)(function)


F32 = np.float32


@kernel
def border(pixels):
    """The frame of pixels a few percent of the image wide, as
    concatenate([pixels[:band], pixels[-band:], pixels[:, :band], pixels[:, -band:]])
    of the raveled pieces (band = max(1, min(height, width) // 32))."""
    height, width = pixels.shape
    band = max(1, min(height, width) // 32)
    frame = np.empty(2 * band * (width + height), pixels.dtype)
    k = 0
    for rows in ((0, band), (height - band, height)):
        for y in range(rows[0], rows[1]):
            for x in range(width):
                frame[k] = pixels[y, x]
                k += 1
    for columns in ((0, band), (width - band, width)):
        for y in range(height):
            for x in range(columns[0], columns[1]):
                frame[k] = pixels[y, x]
                k += 1
    return frame


@kernel
def median(values):
    """np.median of a float32 array: the middle value, or the float32 mean of the two."""
    ordered = np.sort(values)
    middle = ordered.size // 2
    if ordered.size % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / F32(2)


@kernel
def percentile(values, q):
    """np.percentile(values, q) of a non-empty float32 array (numpy's "linear" method:
    the same indexes, the interpolation in float32)."""
    ordered = np.sort(values)
    count = ordered.size
    virtual = (count - 1) * (q / 100)
    previous = math.floor(virtual)
    following = min(previous + 1, count - 1)
    low, high = ordered[previous], ordered[following]
    gamma = virtual - previous
    difference = high - low
    if gamma >= 0.5:
        return float(high - difference * F32(1 - gamma))
    return float(low + difference * F32(gamma))


@kernel
def blurred_extremes(pixels):
    """The least and greatest value of the 3x3 box mean, edges replicated: the float32 sums
    of each pixel's nine neighbours, added in row-major order, min and max divided by 9.0
    (rounding x / 9 never reverses an order, so dividing every sum first gives the same)."""
    height, width = pixels.shape
    least = np.inf
    greatest = -np.inf
    for y in range(height):
        for x in range(width):
            total = F32(0)
            for dy in (-1, 0, 1):
                row = min(max(y + dy, 0), height - 1)
                for dx in (-1, 0, 1):
                    total += pixels[row, min(max(x + dx, 0), width - 1)]
            least = min(least, total)
            greatest = max(greatest, total)
    return float(F32(least) / F32(9.0)), float(F32(greatest) / F32(9.0))


@kernel
def ink_against(gray, background, dark_ink, contrast):
    """Ink relative to a flat background, in units of the contrast:
    np.subtract(background, gray) for dark ink (else gray - background), / contrast."""
    height, width = gray.shape
    level = F32(background)
    scale = F32(contrast)
    ink = np.empty((height, width), F32)
    for y in range(height):
        for x in range(width):
            value = level - gray[y, x] if dark_ink else gray[y, x] - level
            ink[y, x] = value / scale if contrast != 1.0 else value
    return ink


@kernel
def ink_against_paper(gray, paper, low, high, dark_ink):
    """Ink relative to a shaded background: np.clip(paper, low, high) - gray, negated for
    bright ink."""
    height, width = gray.shape
    ink = np.empty((height, width), F32)
    low32, high32 = F32(low), F32(high)
    for y in range(height):
        for x in range(width):
            value = min(max(paper[y, x], low32), high32) - gray[y, x]
            ink[y, x] = value if dark_ink else -value
    return ink


@kernel
def rescale(ink, factor):
    """ink *= factor, in place."""
    factor32 = F32(factor)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            ink[y, x] *= factor32


@kernel
def stroke_peak(ink, floor):
    """The 99th percentile of the ink above floor, or None where there is none."""
    values = ink.ravel()
    strokes = values[values > F32(floor)]
    if strokes.size == 0:
        return None
    return percentile(strokes, 99)


@kernel
def normalise(ink, scale):
    """ink /= scale (unless it is 1) and clip to [0, 1], in place."""
    scale32 = F32(scale)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            value = ink[y, x] / scale32 if scale != 1.0 else ink[y, x]
            ink[y, x] = min(max(value, F32(0.0)), F32(1.0))


@kernel
def robust_spread(values):
    """1.4826 * median(|values - median(values)|): the background's noise as a sigma;
    0 for a clean, even background."""
    if values.min() == values.max():
        return 0.0
    centre = median(values)
    return 1.4826 * float(median(np.abs(values - centre)))


@kernel
def clear_below(ink, haze):
    """ink[ink < haze] = 0, in place."""
    haze32 = F32(haze)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            if ink[y, x] < haze32:
                ink[y, x] = 0.0


@kernel
def fills_frame(ink, fraction):
    """Whether the pixels over 0.5 span at least `fraction` of both dimensions."""
    top, bottom, left, right = bounding_box(ink, 0.5)
    if top < 0:
        return False
    height, width = ink.shape
    return bottom - top >= fraction * height and right - left >= fraction * width


@kernel
def bounding_box(ink, floor):
    """(top, bottom, left, right) of the pixels above floor (bottom and right exclusive);
    (-1, -1, -1, -1) when there are none."""
    height, width = ink.shape
    floor32 = F32(floor)
    top, bottom, left, right = height, -1, width, -1
    for y in range(height):
        for x in range(width):
            if ink[y, x] > floor32:
                top = min(top, y)
                bottom = y
                left = min(left, x)
                right = max(right, x)
    if bottom < 0:
        return -1, -1, -1, -1
    return top, bottom + 1, left, right + 1


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
def stroke_width(ink):
    """Mean stroke width in pixels: twice the area over the perimeter of the pixels over
    0.5, the perimeter being those with a 4-neighbour outside the strokes (or the image)."""
    height, width = ink.shape
    half = F32(0.5)
    area = 0
    interior = 0
    for y in range(height):
        for x in range(width):
            if ink[y, x] > half:
                area += 1
                if (
                    0 < y < height - 1
                    and 0 < x < width - 1
                    and ink[y - 1, x] > half
                    and ink[y + 1, x] > half
                    and ink[y, x - 1] > half
                    and ink[y, x + 1] > half
                ):
                    interior += 1
    if area == 0:
        return 0.0
    return 2.0 * area / max(area - interior, 1)


@kernel
def stretch_to_percentile(ink, q):
    """np.clip(ink / percentile(ink[ink > 0], q), 0.0, 1.0): the typical ink pixel made 1."""
    values = ink.ravel()
    scale = F32(percentile(values[values > 0], q))
    stretched = np.empty(ink.shape, F32)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            stretched[y, x] = min(max(ink[y, x] / scale, F32(0.0)), F32(1.0))
    return stretched


@kernel
def pairwise_sum(values):
    """values.sum() as numpy adds a contiguous 1-D array: runs of up to 128 in blocks of
    eight partial sums, longer ones halved (at a multiple of 8) and the halves added.

    The halving as an explicit stack: numba's on-disk cache crashes on recursion."""
    pending = [(0, values.size, False)]  # (start, count, halves summed)
    sums = [values[0] - values[0]]  # typed as the array's zero; popped unused below
    sums.pop()
    while pending:
        start, count, halved = pending.pop()
        if count <= 128:
            sums.append(_block_sum(values, start, count))
        elif halved:
            second = sums.pop()
            sums.append(sums.pop() + second)
        else:
            half = count // 2
            half -= half % 8
            pending.append((start, count, True))
            pending.append((start + half, count - half, False))
            pending.append((start, half, False))
    return sums[0]


@kernel
def _block_sum(values, start, count):
    if count < 8:
        total = values[start] - values[start]  # zero of the array's type
        for i in range(start, start + count):
            total += values[i]
        return total
    partial = values[start : start + 8].copy()
    i = 8
    while i < count - count % 8:
        for j in range(8):
            partial[j] += values[start + i + j]
        i += 8
    total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
        (partial[4] + partial[5]) + (partial[6] + partial[7])
    )
    while i < count:
        total += values[start + i]
        i += 1
    return total


@kernel
def place_by_centre_of_mass(digit, size, centre):
    """The digit scaled to a peak of 1 (digit / digit.max()) in a size x size frame of
    zeros, its centre of mass (float32 total, float64 moments, numpy's sums) rounded half
    to even onto `centre`, the whole box kept inside; None for a digit without ink."""
    height, width = digit.shape
    if height > size or width > size:  # compiled code checks no bounds: we do
        raise ValueError("the digit is larger than the frame")
    peak = F32(-np.inf)
    for y in range(height):
        for x in range(width):
            peak = max(peak, digit[y, x])
    if not peak > 0:
        return None
    scaled = np.empty(height * width, F32)
    row_weights = np.empty(height * width, np.float64)
    col_weights = np.empty(height * width, np.float64)
    for y in range(height):
        for x in range(width):
            value = digit[y, x] / peak
            scaled[y * width + x] = value
            row_weights[y * width + x] = y * np.float64(value)
            col_weights[y * width + x] = x * np.float64(value)
    total = float(pairwise_sum(scaled))
    centre_row = pairwise_sum(row_weights) / total
    centre_col = pairwise_sum(col_weights) / total
    top = min(max(int(np.rint(centre - centre_row)), 0), size - height)
    left = min(max(int(np.rint(centre - centre_col)), 0), size - width)
    frame = np.zeros((size, size), F32)
    for y in range(height):
        for x in range(width):
            frame[top + y, left + x] = scaled[y * width + x]
    return frame

"""The numpy version of preprocessing's pixel work, as it was before the numba kernels
(serving/preprocessing/kernels.py) replaced it: the oracle they are held to, bit for bit.

Kept verbatim (commit 49016dc) but for the steps that stayed in serving.preprocessing,
imported from there. Not used by the service.
"""

import functools
import math

import numpy as np

from contract import CHANNELS, DIGIT_BOX, IMAGE_SIZE
from serving.errors import NoInk
from serving.preprocessing import (
    FAINT_RIM_PIXELS,
    HAZE_FLOOR,
    LOSSY_HAZE_FLOOR,
    MIN_INK_CONTRAST,
    MIN_STROKE_WIDTH_IN_BOX,
    MNIST_CENTRE_OF_MASS,
    NOISE_FLOOR,
    NOISE_SIGMAS,
    SHADING_MAX,
    SHADING_MIN_SPREAD,
    TARGET_STROKE_WIDTH_IN_BOX,
    TIGHT_CROP_FRACTION,
    WORK_SCALE,
    _background_map,
    _fit,
    _resize,
    _square_extreme,
)

# Small images (an MNIST upload, a thumbnail) cost numpy calls more than arithmetic: up
# to this size their border and 3x3 neighbourhoods are gathered in one call each, by
# index arrays made once per shape.
SMALL_IMAGE_PIXELS = 64 * 64


def _border(gray: np.ndarray) -> np.ndarray:
    """The pixels of a frame around the image, a few percent of its size wide."""
    height, width = gray.shape
    if height * width <= SMALL_IMAGE_PIXELS:
        return gray.take(_border_indices(height, width))
    return _frame_of(gray)


def _frame_of(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape
    band = max(1, min(height, width) // 32)
    return np.concatenate(
        [
            pixels[:band].ravel(),
            pixels[-band:].ravel(),
            pixels[:, :band].ravel(),
            pixels[:, -band:].ravel(),
        ]
    )


@functools.lru_cache(maxsize=64)
def _border_indices(height: int, width: int) -> np.ndarray:
    """Where _frame_of takes its pixels from, as flat indices in the same order."""
    indices = _frame_of(np.arange(height * width).reshape(height, width))
    indices.flags.writeable = False
    return indices


def ink_map(gray: np.ndarray, *, lossy: bool = False) -> np.ndarray:
    """Ink as bright-on-dark in [0, 1], background 0; raises NoInk for a uniform image.

    Polarity comes from the background, estimated as the median of the image border
    (digits are drawn inside the frame; the mean would be swayed by a thick digit): the
    ink is whichever extreme lies further from it. Extremes are taken after a 3x3 blur,
    so a few noisy pixels neither fake ink nor decide the polarity.
    """
    border = _border(gray)
    # A clean background (the common case) is one value: no median, no shading needed.
    even_border = not np.count_nonzero(border != border[0])
    background = float(border[0]) if even_border else float(np.median(border))
    darkest, brightest = _blurred_extremes(gray)
    dark_contrast = background - darkest
    bright_contrast = brightest - background
    if max(dark_contrast, bright_contrast) < MIN_INK_CONTRAST:
        raise NoInk("the image is uniform: no digit found")
    dark_ink = dark_contrast > bright_contrast
    contrast = dark_contrast if dark_ink else bright_contrast
    rough_ink = np.subtract(background, gray) if dark_ink else np.subtract(gray, background)
    # Full contrast (pure black on white, the usual canvas) is 1: x / 1 and x * 1 are x,
    # and these passes over the image are skipped.
    if contrast != 1.0:
        rough_ink /= contrast
    # An even border has no spread (np.ptp is 0), so it never asks for shading.
    shaded = (
        not even_border
        and float(np.ptp(border)) > SHADING_MIN_SPREAD * contrast
        and not _fills_frame(rough_ink)
    )
    if shaded:
        # Shading is a gentle variation of the paper; clipped so that a bold stroke
        # that leaked into the estimate can never erase itself.
        paper = _background_map(gray, dark_ink=dark_ink, stroke=_stroke_width(rough_ink))
        reach = SHADING_MAX * contrast
        ink = np.clip(paper, background - reach, background + reach) - gray
        ink = ink if dark_ink else -ink
    else:
        ink = rough_ink  # an even border or a tight crop: a flat background
        if contrast != 1.0:
            ink *= contrast
    # The ink's own level (a pen is not pure black) becomes 1, as MNIST's strokes are.
    strokes = ink[ink > NOISE_FLOOR * contrast]
    peak = _percentile(strokes, 99) if strokes.size else contrast
    scale = max(peak, MIN_INK_CONTRAST / 2)
    if scale != 1.0:
        ink /= scale
    ink.clip(0.0, 1.0, out=ink)  # np.clip's own wrapper costs more than the clipping
    if even_border and not shaded:
        # Without shading each ink pixel is the same function of its gray value: an
        # even border of gray stays an even border of ink, which has no spread.
        spread = 0.0
    else:
        border = _border(ink)
        if border.min() == border.max():
            spread = 0.0  # a clean background: no medians needed
        else:
            spread = 1.4826 * float(np.median(np.abs(border - np.median(border))))  # robust sigma
    haze = max(HAZE_FLOOR, NOISE_SIGMAS * spread, LOSSY_HAZE_FLOOR if lossy else 0.0)
    ink[ink < haze] = 0.0
    return ink.astype(np.float32, copy=False)


def _percentile(values: np.ndarray, q: int) -> float:
    """float(np.percentile(values, q)) for a 1-D float32 array, bit for bit (numpy's
    "linear" method: the same indexes, the same float32 interpolation), without its
    generic machinery: ~2.5 us instead of ~20 for a small image's strokes.

    `values` is scratch: partitioned in place (a percentile ignores the order)."""
    count = values.size
    if count < 2:
        return float(np.percentile(values, q))
    virtual = (count - 1) * (q / 100)
    previous = math.floor(virtual)
    following = min(previous + 1, count - 1)
    values.partition(sorted({0, previous, following, count - 1}))
    part = values
    if math.isnan(part[-1]):
        return float(np.percentile(values, q))  # NaN sorts last; numpy's rules apply
    low, high = part[previous], part[following]
    gamma = virtual - previous
    difference = high - low
    if gamma >= 0.5:
        return float(high - difference * (1 - gamma))
    return float(low + difference * gamma)


def _pad1(pixels: np.ndarray) -> np.ndarray:
    """np.pad(pixels, 1, mode="edge") at a fraction of np.pad's overhead (which
    dominates for a 28x28 image)."""
    height, width = pixels.shape
    padded = np.empty((height + 2, width + 2), dtype=pixels.dtype)
    padded[1:-1, 1:-1] = pixels
    padded[0, 1:-1] = pixels[0]
    padded[-1, 1:-1] = pixels[-1]
    padded[:, 0] = padded[:, 1]
    padded[:, -1] = padded[:, -2]
    return padded


def _blurred_extremes(pixels: np.ndarray) -> tuple[float, float]:
    """The least and greatest value of the 3x3 box mean (edges replicated).

    Rounding x / 9 never reverses an order, so these are the extremes of the 3x3 sums
    divided by 9: the same values as dividing every sum first."""
    total = _box_sum3(pixels)
    return float(total.min() / 9.0), float(total.max() / 9.0)


def _box_sum3(pixels: np.ndarray) -> np.ndarray:
    """Float32 sums over each pixel's 3x3 neighbourhood (edges replicated), added in
    row-major order of the neighbours."""
    height, width = pixels.shape
    if pixels.dtype == np.float32 and 1 < height * width <= SMALL_IMAGE_PIXELS:
        padded = pixels.take(_edge_padded_indices(height, width))
        # [dy, dx, y, x] -> padded[y + dy, x + dx]: the neighbourhoods, as a view.
        row, col = padded.strides
        windows = np.ndarray((3, 3, height, width), padded.dtype, padded, 0, (row, col) * 2)
        # The nine neighbours in row-major order, copied to [9, height, width] in C order
        # and added along the first axis. That is not the fast axis in memory (the
        # pixels are, when there is more than one), so numpy adds the nine one after
        # another instead of pairwise (np.sum's documented rule): the additions that
        # _box_sum3_by_shifts makes.
        nine = np.ascontiguousarray(windows.reshape(9, height, width))
        return np.add.reduce(nine, axis=0)
    return _box_sum3_by_shifts(pixels)


def _box_sum3_by_shifts(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape
    padded = _pad1(pixels)
    total = padded[:height, :width].astype(np.float32)  # a copy: 0 + x == x exactly
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                total += padded[dy : dy + height, dx : dx + width]
    return total


@functools.lru_cache(maxsize=64)
def _edge_padded_indices(height: int, width: int) -> np.ndarray:
    """Flat indices that take _pad1(pixels) from pixels in one call."""
    indices = _pad1(np.arange(height * width).reshape(height, width))
    indices.flags.writeable = False
    return indices


def _fills_frame(ink: np.ndarray) -> bool:
    """A tight crop: the digit spans most of both dimensions, leaving no paper around it
    to estimate shading from (and the border varies because strokes touch it)."""
    mask = ink > 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return False
    height, width = ink.shape
    return (
        rows[-1] - rows[0] + 1 >= TIGHT_CROP_FRACTION * height
        and cols[-1] - cols[0] + 1 >= TIGHT_CROP_FRACTION * width
    )


def _bounding_box(ink: np.ndarray, floor: float = 0.0) -> tuple[int, int, int, int]:
    mask = ink > floor
    # A bool array's bytes are 0 or 1, and bytes.find costs a fraction of np.nonzero:
    # the first and last ink pixel in row-major order lie in the top and bottom rows.
    pixels = mask.tobytes()
    first = pixels.find(1)
    if first < 0:
        raise NoInk("the image is uniform: no digit found")
    width = mask.shape[1]
    columns = mask.any(axis=0).tobytes()
    return first // width, pixels.rfind(1) // width + 1, columns.find(1), columns.rfind(1) + 1


def _grow_over_faint_edges(
    ink: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """Widen the box over the faint anti-aliased rim of the strokes just outside it: the
    floor that keeps noise from deciding the box would otherwise shave the rim off
    (and with it the digit's exact size and centre of mass)."""
    top, bottom, left, right = box
    height, width = ink.shape
    # np.count_nonzero(x) > 0 is x.any(), without the method's generic reduction.
    for _ in range(FAINT_RIM_PIXELS):
        if top > 0 and np.count_nonzero(ink[top - 1, left:right]):
            top -= 1
        if bottom < height and np.count_nonzero(ink[bottom, left:right]):
            bottom += 1
        if left > 0 and np.count_nonzero(ink[top:bottom, left - 1]):
            left -= 1
        if right < width and np.count_nonzero(ink[top:bottom, right]):
            right += 1
    return top, bottom, left, right


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink area over its perimeter."""
    height, width = ink.shape
    padded = np.zeros((height + 2, width + 2), dtype=bool)  # no ink outside the image
    mask = padded[1:-1, 1:-1]
    np.greater(ink, 0.5, out=mask)
    area = np.count_nonzero(mask)
    if area == 0:
        return 0.0
    interior = mask & padded[:-2, 1:-1]
    interior &= padded[2:, 1:-1]
    interior &= padded[1:-1, :-2]
    interior &= padded[1:-1, 2:]
    perimeter = area - np.count_nonzero(interior)
    return 2.0 * area / max(perimeter, 1)


def _thicken(ink: np.ndarray, box: int) -> np.ndarray:
    """Dilate hairline strokes so they survive the shrink to the 20-pixel box."""
    height, width = ink.shape
    work = box * WORK_SCALE
    if max(height, width) > work:
        ink = _resize(ink, *_fit(height, width, work))
    pixels_per_box_pixel = max(ink.shape) / box
    width_in_box = _stroke_width(ink) / pixels_per_box_pixel
    if width_in_box >= MIN_STROKE_WIDTH_IN_BOX:
        return ink
    # Shrinking spread a hairline over a fraction of a pixel: give it back its full ink
    # (the typical stroke pixel becomes 1), so it grows evenly instead of as grey blobs.
    ink = np.clip(ink / _percentile(ink[ink > 0], 90), 0.0, 1.0)
    width_in_box = _stroke_width(ink) / pixels_per_box_pixel
    if width_in_box >= MIN_STROKE_WIDTH_IN_BOX:
        return ink
    grow = (TARGET_STROKE_WIDTH_IN_BOX - width_in_box) * pixels_per_box_pixel
    size = 2 * max(1, round(grow / 2)) + 1  # odd filter size adding ~`grow` pixels
    padded = np.pad(ink, size)  # room for the strokes to grow at the edges
    grown = _square_extreme(padded, size, np.max)  # PIL's MaxFilter(size), exactly
    top, bottom, left, right = _bounding_box(grown)
    return grown[top:bottom, left:right]


@functools.cache
def _indices(height: int, width: int) -> np.ndarray:
    """np.indices((height, width)) as float64, made once per shape (at most 20x20 ones:
    the fitted box). Integers below 2**53 are exact in float64: the products with a
    float32 digit are the ones numpy makes from the integer indices."""
    indices = np.indices((height, width), dtype=np.float64)
    indices.flags.writeable = False
    return indices


def _place_by_centre_of_mass(digit: np.ndarray) -> np.ndarray:
    height, width = digit.shape
    total = float(digit.sum())
    # Both weighted sums in one reduction along the contiguous last axis: each row of
    # the product summed the way (rows * digit).sum() sums it (the same pairwise sum).
    row_moment, col_moment = (_indices(height, width) * digit).reshape(2, -1).sum(axis=1)
    centre_row = float(row_moment) / total
    centre_col = float(col_moment) / total
    top = round(MNIST_CENTRE_OF_MASS - centre_row)
    left = round(MNIST_CENTRE_OF_MASS - centre_col)
    # Keep the whole box inside the frame, as MNIST does.
    top = min(max(top, 0), IMAGE_SIZE - height)
    left = min(max(left, 0), IMAGE_SIZE - width)
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    frame[top : top + height, left : left + width] = digit
    return frame


def mnist_like(gray: np.ndarray, *, lossy: bool = False) -> np.ndarray:
    """Grayscale [0, 1] array of any size -> float32 [28, 28, 1], MNIST-style."""
    ink = ink_map(gray, lossy=lossy)
    top, bottom, left, right = _grow_over_faint_edges(ink, _bounding_box(ink, NOISE_FLOOR))
    digit = _thicken(ink[top:bottom, left:right], DIGIT_BOX)
    digit = _resize(digit, *_fit(*digit.shape, DIGIT_BOX))
    peak = float(digit.max())
    if peak <= 0.0:
        raise NoInk("the image is uniform: no digit found")
    digit = digit / peak
    return _place_by_centre_of_mass(digit).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)

"""The numba `kernel` decorator, and the pixel operations more than one stage uses.

Each stage keeps its compiled loops beside it (`ink_kernels.py`, `placement_kernels.py`):
a small upload's pixel work, written as numpy expressions, is dominated by the fixed cost
of each numpy call; a loop does the same work in one pass. Each kernel's docstring names
the numpy expression it computes; the tests hold it to that expression within float32
rounding (tests/serving/preprocessing/test_preprocessing_kernels.py).

Compiled on first call and cached on disk: in NUMBA_CACHE_DIR where set, else __pycache__
beside these files, else the user's cache directory. serving.preprocessing.warm_up runs
them all before the gateway reports ready. They release the GIL: large uploads are
preprocessed in a thread pool beside the event loop.
"""

import numpy as np
from numba import njit

F32 = np.float32

# The digit's box (digit_box): pieces with at least this share of the heaviest one's ink,
# and at most JOIN_GAP of the digit's longer side away from it, are strokes of the same
# digit (a 5's floating bar, a 4 drawn in two strokes, a broken pen line).
JOIN_SHARE = 0.05
JOIN_GAP = 0.5
# What lies outside the digit's box may hold at most this share of its ink and still be
# dust (grain, specks, a stray dot of shading); more, and the image holds more than a digit.
DUST_SHARE = 0.2


def kernel(function):
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:
        # No writable cache directory anywhere (numba refuses cache=True then): the
        # kernels are compiled in memory at each start instead.
        return njit(nogil=True)(function)


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
def _line_extreme(pixels, window, maximum):
    """Max (or min) over `window` neighbours along each row, edges replicated."""
    height, width = pixels.shape
    half = window // 2
    out = np.empty((height, width), pixels.dtype)
    for y in range(height):
        for x in range(width):
            best = pixels[y, min(max(x - half, 0), width - 1)]
            for k in range(x - half + 1, x + half + 1):
                value = pixels[y, min(max(k, 0), width - 1)]
                best = max(best, value) if maximum else min(best, value)
            out[y, x] = best
    return out


def square_extreme(pixels: np.ndarray, window: int, maximum: bool) -> np.ndarray:
    """Max (or min) over a window x window square, edges replicated: PIL's MaxFilter and
    MinFilter, as two 1-D passes instead of a rank selection per window."""
    rows = _line_extreme(np.ascontiguousarray(pixels.T), window, maximum).T
    return _line_extreme(np.ascontiguousarray(rows), window, maximum)


@kernel
def labelled_pieces(ink, floor):
    """The 8-connected pieces of the pixels above floor: a label image (0 for the
    background, piece k labelled k) and rows of (ink mass, top, bottom, left, right),
    bottom and right exclusive, piece k in row k - 1, in the order of their first pixel
    (row-major): what scipy.ndimage.label and find_objects give, with the mass summed."""
    height, width = ink.shape
    floor32 = F32(floor)
    labels = np.zeros((height, width), np.int32)
    stack = np.empty((height * width, 2), np.int32)
    stats = np.empty((16, 5), np.float64)
    count = 0
    for y0 in range(height):
        for x0 in range(width):
            if labels[y0, x0] != 0 or not ink[y0, x0] > floor32:
                continue
            if count == stats.shape[0]:
                grown = np.empty((2 * count, 5), np.float64)
                grown[:count] = stats
                stats = grown
            mass = 0.0
            top, bottom, left, right = y0, y0, x0, x0
            labels[y0, x0] = count + 1
            stack[0, 0], stack[0, 1] = y0, x0
            size = 1
            while size > 0:
                size -= 1
                y, x = stack[size, 0], stack[size, 1]
                mass += ink[y, x]
                top, bottom = min(top, y), max(bottom, y)
                left, right = min(left, x), max(right, x)
                for ny in range(max(y - 1, 0), min(y + 2, height)):
                    for nx in range(max(x - 1, 0), min(x + 2, width)):
                        if labels[ny, nx] == 0 and ink[ny, nx] > floor32:
                            labels[ny, nx] = count + 1
                            stack[size, 0], stack[size, 1] = ny, nx
                            size += 1
            stats[count, 0] = mass
            stats[count, 1], stats[count, 2] = top, bottom + 1
            stats[count, 3], stats[count, 4] = left, right + 1
            count += 1
    return labels, stats[:count].copy()


def pieces(ink: np.ndarray, floor: float) -> np.ndarray:
    """The rows of labelled_pieces alone."""
    return labelled_pieces(ink, floor)[1]


def digit_box(pieces: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the heaviest piece and the pieces that join it, from
    rows of (mass, top, bottom, left, right); None where the rest is more than dust."""
    if len(pieces) == 0:
        return None
    order = np.argsort(-pieces[:, 0], kind="stable")
    heaviest = pieces[order[0], 0]
    top, bottom, left, right = pieces[order[0], 1:]
    joined = {int(order[0])}
    grew = True
    while grew:  # a joined piece can bring another within reach
        grew = False
        reach = JOIN_GAP * max(bottom - top, right - left)
        for index in order[1:]:
            mass, piece_top, piece_bottom, piece_left, piece_right = pieces[index]
            if index in joined or mass < JOIN_SHARE * heaviest:
                continue
            gap = max(
                top - piece_bottom, piece_top - bottom, left - piece_right, piece_left - right
            )
            if gap <= reach:
                joined.add(int(index))
                top, bottom = min(top, piece_top), max(bottom, piece_bottom)
                left, right = min(left, piece_left), max(right, piece_right)
                grew = True
    kept = pieces[list(joined), 0].sum()
    if pieces[:, 0].sum() - kept > DUST_SHARE * kept:
        return None
    return int(top), int(bottom), int(left), int(right)

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


def square_extreme(pixels: np.ndarray, window: int, reduce) -> np.ndarray:
    """Max (or min) over a window x window square, edges replicated: PIL's MaxFilter and
    MinFilter, as two 1-D passes instead of a rank selection per window."""
    padded = np.pad(pixels, window // 2, mode="edge")
    rows = reduce(np.lib.stride_tricks.sliding_window_view(padded, window, axis=0), axis=-1)
    return reduce(np.lib.stride_tricks.sliding_window_view(rows, window, axis=1), axis=-1)

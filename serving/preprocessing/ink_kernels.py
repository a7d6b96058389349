"""The compiled pixel loops of the ink stage (serving.preprocessing.ink)."""

import numpy as np

from serving.preprocessing.kernels import F32, bounding_box, kernel


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
def blurred_extremes(pixels):
    """(min, max) of the 3x3 box mean, edges replicated."""
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
    return least / 9.0, greatest / 9.0


@kernel
def ink_against(gray, background, dark_ink, contrast):
    """Ink against a flat background in units of the contrast:
    (background - gray) / contrast for dark ink, (gray - background) / contrast else."""
    height, width = gray.shape
    level = F32(background)
    scale = F32(contrast)
    ink = np.empty((height, width), F32)
    for y in range(height):
        for x in range(width):
            value = level - gray[y, x] if dark_ink else gray[y, x] - level
            ink[y, x] = value / scale
    return ink


@kernel
def ink_against_paper(gray, paper, low, high, dark_ink):
    """Ink against a shaded background: np.clip(paper, low, high) - gray, negated for
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
    """np.percentile(ink[ink > floor], 99), or None where no pixel is above floor."""
    strokes = ink.ravel()[ink.ravel() > F32(floor)]
    if strokes.size == 0:
        return None
    return np.percentile(strokes, 99)


@kernel
def normalise(ink, scale):
    """ink = np.clip(ink / scale, 0, 1), in place."""
    scale32 = F32(scale)
    for y in range(ink.shape[0]):
        for x in range(ink.shape[1]):
            ink[y, x] = min(max(ink[y, x] / scale32, F32(0.0)), F32(1.0))


@kernel
def robust_spread(values):
    """1.4826 * median(|values - median(values)|): the background's noise as a sigma."""
    centre = np.median(values)
    return 1.4826 * np.median(np.abs(values - centre))


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

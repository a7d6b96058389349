"""Stage 3: grayscale -> ink as bright-on-dark in [0, 1] with the background at 0.

Polarity, paper shading and the noise floor: what real uploads do differently from
MNIST's clean white-on-black strokes.
"""

import numpy as np
from PIL import Image

from serving.errors import NoInk
from serving.preprocessing import ink_kernels as kernels
from serving.preprocessing.kernels import square_extreme, stroke_width

# Ink must differ from the background by this much (of full scale) to count at all:
# below it the image is uniform (a blank page, a flat colour, JPEG noise).
MIN_INK_CONTRAST = 0.12
# After stretching ink to [0, 1], values below this floor are background noise (JPEG
# ringing around strokes, paper texture, shading): they never decide the bounding box.
# MNIST's own faint anti-aliased edges sit below it too, but never decide its box either
# (measured: the box of every MNIST test digit is the same at > 0 and > 0.1).
NOISE_FLOOR = 0.1
# Haze cleared everywhere: a low floor for clean images, so MNIST's soft stroke edges
# survive; higher where the image is noisy (estimated from the background's spread)
# or lossy-compressed (ringing next to strokes, where the background cannot show it).
HAZE_FLOOR = 0.02
LOSSY_HAZE_FLOOR = 0.1
NOISE_SIGMAS = 4.0
# Paper shading (uneven light on a photo) is estimated on a map this many pixels across
# with a window this fraction of it (wider than strokes), and may shift the background
# by at most this fraction of the ink contrast.
SHADING_MAP_SIZE = 64
SHADING_WINDOW = 0.25
COARSE_SHADING_WINDOW = 0.1
SHADING_MAX = 0.35
COARSE_SHADING_MAX = 2.0  # in a coarse view (see ink_map): as far as the gray levels go
SHADING_STROKES = 2.0  # the window spans at least this many mean stroke widths
TIGHT_CROP_FRACTION = 0.8  # ink spanning this much of both sides: no paper to model
# ... and is only estimated when the border itself varies by more than this fraction.
SHADING_MIN_SPREAD = 0.05


def ink_map(gray: np.ndarray, *, lossy: bool = False, coarse: bool = False) -> np.ndarray:
    """Ink as bright-on-dark in [0, 1], background 0; raises NoInk for a uniform image.

    `coarse`: the image is a coarse view in which the digit is only to be found (the
    region stage). The paper's shading is then taken out however strong, and also where
    the ink seems to span the frame: on a photo, a vignette's dark corners do, and they
    are not strokes. A bold stroke that erases itself there shrinks a box that has a
    margin of paper around it and is measured again at full resolution.

    Polarity comes from the background, estimated as the median of the image border
    (digits are drawn inside the frame; the mean would be swayed by a thick digit): the
    ink is whichever extreme lies further from it. Extremes are taken after a 3x3 blur,
    so a few noisy pixels neither fake ink nor decide the polarity.
    """
    border = kernels.border(gray)
    # A clean background (the common case) is one value: no median, no shading needed.
    even_border = bool(border.min() == border.max())
    background = float(border[0]) if even_border else float(np.median(border))
    darkest, brightest = kernels.blurred_extremes(gray)
    dark_contrast = background - darkest
    bright_contrast = brightest - background
    if max(dark_contrast, bright_contrast) < MIN_INK_CONTRAST:
        raise NoInk("the image is uniform: no digit found")
    dark_ink = dark_contrast > bright_contrast
    contrast = dark_contrast if dark_ink else bright_contrast
    ink = kernels.ink_against(gray, background, dark_ink, contrast)  # in units of contrast
    shaded = (
        not even_border
        and float(border.max() - border.min()) > SHADING_MIN_SPREAD * contrast
        and (coarse or not kernels.fills_frame(ink, TIGHT_CROP_FRACTION))
    )
    if shaded:
        # Shading is a gentle variation of the paper; clipped so that a bold stroke
        # that leaked into the estimate can never erase itself.
        window = COARSE_SHADING_WINDOW if coarse else SHADING_WINDOW
        paper = _background_map(
            gray, dark_ink=dark_ink, stroke=stroke_width(ink), window_share=window, coarse=coarse
        )
        reach = (COARSE_SHADING_MAX if coarse else SHADING_MAX) * contrast
        ink = kernels.ink_against_paper(
            gray, paper, background - reach, background + reach, dark_ink
        )
    else:
        kernels.rescale(ink, contrast)  # a flat background: back to gray levels
    # The ink's own level (a pen is not pure black) becomes 1, as MNIST's strokes are.
    peak = kernels.stroke_peak(ink, NOISE_FLOOR * contrast)
    kernels.normalise(ink, max(contrast if peak is None else peak, MIN_INK_CONTRAST / 2))
    # Without shading each ink pixel is the same function of its gray value: an even
    # border of gray stays an even border of ink, which has no spread.
    spread = 0.0 if even_border and not shaded else kernels.robust_spread(kernels.border(ink))
    haze = max(HAZE_FLOOR, NOISE_SIGMAS * spread, LOSSY_HAZE_FLOOR if lossy else 0.0)
    kernels.clear_below(ink, haze)
    return ink


def _background_map(
    gray: np.ndarray, *, dark_ink: bool, stroke: float, window_share: float, coarse: bool
) -> np.ndarray:
    """The paper without the ink: a morphological closing (opening for bright ink) with a
    window wider than any stroke, computed small and scaled back up smoothly.

    The window is a fraction of the image, but never narrower than a few stroke widths:
    where the digit fills the image (a tight crop) a fraction of the image is no wider
    than a bold stroke, and the "paper" would take the ink with it."""
    height, width = gray.shape
    scale = min(1.0, SHADING_MAP_SIZE / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(gray, mode="F").resize(small_size, Image.Resampling.BOX)
    reach = max(window_share * max(height, width), SHADING_STROKES * stroke) * scale
    window = 2 * max(1, round(reach / 2)) + 1
    # Closing (max, then min) takes dark strokes off bright paper; opening, bright ones.
    # A coarse view's edges are paper under the light's gradient: padded by extending the
    # slope (odd reflection), since a repeated edge makes the window at the dark end of a
    # gradient see only the bright side, and a photo's shaded edge turned into ink. Other
    # images keep the repeated edge: where strokes touch it (a tight crop), odd reflection
    # would mirror them darker than the ink (2 of 1,000 tight crops then changed outcome).
    pad = window // 2 if coarse else 0
    paper = np.pad(np.asarray(small), pad, mode="reflect", reflect_type="odd")
    paper = square_extreme(paper, window, maximum=dark_ink)
    paper = square_extreme(paper, window, maximum=not dark_ink)
    paper = np.ascontiguousarray(paper[pad : pad + small.height, pad : pad + small.width])
    paper = Image.fromarray(paper).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(paper, dtype=np.float32)

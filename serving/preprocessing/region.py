"""Stage 2 (large images): find the ink on a coarse view, keep only the region around it.

A photo of a digit on paper is mostly paper: the digit may be a tenth of the frame's
height, anywhere in it. Worked on whole, such a frame costs time in proportion to the
photo, and its grain, its shading and every stray mark get a say in the digit's box. So
an image larger than COARSE_SIDE is first looked at small (box-averaged): the same ink map
as the digit's own (ink.py: polarity, shading, noise floor), its 8-connected pieces, the
digit as the heaviest piece with the pieces near it. The region around them, with a
margin of paper so that the ink map of the region sees its own background, is cut from
the full image and shrunk to the resolution the 20-pixel box needs.

Only dust is left out: where the pieces away from the digit hold more than a little ink
(a page of writing, a textured photo, a drawing), the whole image goes on, as it always
did, and the model sees all of it.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from contract import DIGIT_BOX
from serving.errors import NoInk
from serving.preprocessing.ink import NOISE_FLOOR, ink_map
from serving.preprocessing.kernels import JOIN_SHARE, digit_box, pieces, stroke_width

# Images whose longer side exceeds this are looked at through a coarse view this size.
COARSE_SIDE = 192
# Paper kept around the digit on each side, as a share of its longer side.
MARGIN = 0.25
# The region is box-averaged until the digit's longer side is at most twice this many
# pixels: the resolution placement.py measures and thickens strokes at.
DIGIT_PIXELS = 4 * DIGIT_BOX  # placement.WORK_SCALE boxes
# ... and never so far that its strokes would be narrower than this: averaged thinner, a
# hairline fades under the ink map's contrast floor (a 1 px pen line on a 1,120 px scan).
MIN_STROKE_PIXELS = 3


@dataclass(frozen=True)
class Region:
    """Part of an image: its pixels, box-averaged by `scale`, from (top, left) on."""

    pixels: np.ndarray
    top: int = 0
    left: int = 0
    scale: int = 1


def digit_region(gray: np.ndarray, *, lossy: bool = False) -> np.ndarray:
    """The part of a grayscale image [H, W] in [0, 1] that holds the digit, at the
    resolution it needs; the image itself where it is small or holds more than a digit."""
    return find_region(gray, lossy=lossy).pixels


def line_box(pieces: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of every piece with at least JOIN_SHARE of the heaviest
    one's ink: a line of digits (POST /v1/read) holds several pieces of like weight."""
    if len(pieces) == 0:
        return None
    kept = pieces[pieces[:, 0] >= JOIN_SHARE * pieces[:, 0].max()]
    return (
        int(kept[:, 1].min()),
        int(kept[:, 2].max()),
        int(kept[:, 3].min()),
        int(kept[:, 4].max()),
    )


def find_region(gray: np.ndarray, *, lossy: bool = False, box_of=digit_box) -> Region:
    """The region around what `box_of` finds among the coarse view's pieces (a digit:
    digit_box; a line of digits: line_box), cut out and shrunk until the height (and for
    a digit the width) it finds is at most DIGIT_PIXELS; the whole image where it is
    small or nothing is found."""
    whole = Region(gray)
    height, width = gray.shape
    factor = math.ceil(max(height, width) / COARSE_SIDE)
    if factor < 2:
        return whole
    coarse = np.asarray(Image.fromarray(gray, mode="F").reduce(factor))
    try:
        ink = ink_map(coarse, lossy=lossy, coarse=True)
    except NoInk:  # faint strokes averaged away: the full image decides
        return whole
    found = box_of(pieces(ink, NOISE_FLOOR))
    if found is None:
        return whole
    top, bottom, left, right = found
    margin = MARGIN * max(bottom - top, right - left) + 1
    top = max(0, math.floor((top - margin) * factor))
    left = max(0, math.floor((left - margin) * factor))
    bottom = min(height, math.ceil((bottom + margin) * factor))
    right = min(width, math.ceil((right + margin) * factor))
    region = gray[top:bottom, left:right]
    size = (
        found[1] - found[0] if box_of is line_box else max(found[1] - found[0], found[3] - found[2])
    )
    stroke_pixels = stroke_width(ink) * factor  # an upper bound: a hairline is 1 coarse pixel
    shrink = int(min(size * factor // DIGIT_PIXELS, stroke_pixels // MIN_STROKE_PIXELS))
    if shrink < 2:
        return Region(region, top, left)
    region = Image.fromarray(np.ascontiguousarray(region), mode="F").reduce(shrink)
    return Region(np.asarray(region), top, left, shrink)

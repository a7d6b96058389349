"""Reading a number (POST /v1/read): one line of ink cut into digits, each made MNIST-like
as /v1/predict makes a single digit.

One pipeline, not a second: the same decode, the same coarse view for large images
(region.py, here keeping the whole line of pieces rather than one digit), the same ink
map (background, polarity, shading and noise floor decided once for the image), then:

1. the ink's 8-connected pieces; dust (a piece under DUST_SHARE of the heaviest one's
   ink) left out;
2. strokes of one digit joined: pieces whose columns overlap by at least JOIN_OVERLAP of
   the narrower one's width are one segment (a 5 whose bar floats, a 4 or 7 drawn in two
   strokes, a broken pen line). One line of text is read left to right, so what stands
   above or below another piece belongs to it;
3. touching digits split: a segment wider than SPLIT_ASPECT times the line's height holds
   round(width / digit width) digits (the median width of the line's single digits, else
   DIGIT_ASPECT of its height), cut at the columns of least ink near the even cuts.
   Column sums are cheap, need no model and work the same behind every backend; cuts
   scored by the model would cost a backend call per candidate. Where round digits touch
   side by side (00, 08) the column through the touch holds the most ink, not the least:
   the cut then misses it (docs/reading.md measures how often). What cannot be
   separated stays one segment, which the model then reads as a digit or not;
4. each segment's own ink (its pixels only, not a neighbour's reaching into its box) is
   placed in the 28x28 frame by placement.place, exactly as a single digit is;
5. marks much shorter than the line ('-', '.', ','): MARK_HEIGHT of the line's height or
   less, are reported and never read as digits.

A slanted or wavy baseline changes nothing: segments are ordered by their centre's
column, and no step assumes a straight line.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from contract import CHANNELS, IMAGE_SIZE
from serving.errors import NoInk, TooManySegments
from serving.preprocessing.ink import NOISE_FLOOR, ink_map
from serving.preprocessing.kernels import labelled_pieces
from serving.preprocessing.placement import place
from serving.preprocessing.region import find_region, line_box

DUST_SHARE = 0.01
JOIN_OVERLAP = 0.5
# MNIST's digits are mostly 0.3-1.0 times as wide as tall (a 1 the narrowest); a segment
# this much wider than tall holds several.
SPLIT_ASPECT = 1.3
DIGIT_ASPECT = 0.75
# A cut is looked for within this share of a digit's width of the even cut.
CUT_WINDOW = 0.35
MARK_HEIGHT = 0.45
# The line's height: the median height of the segments with at least this share of the
# heaviest segment's ink (so that marks and dots do not lower it).
LINE_SHARE = 0.3


@dataclass(frozen=True)
class Segment:
    """One segment of a reading, in reading order."""

    frame: np.ndarray  # float32 [28, 28, 1], as mnist_like makes it
    box: tuple[int, int, int, int]  # top, bottom, left, right in the decoded image's pixels
    mark: bool  # much shorter than the line: a '-', '.' or ',', never a digit


@dataclass
class _Part:
    labels: set[int]
    top: int
    bottom: int
    left: int
    right: int
    mass: float

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def read_segments(gray: np.ndarray, *, lossy: bool = False, max_segments: int) -> list[Segment]:
    """The segments of one line of ink, left to right; NoInk if uniform, TooManySegments
    past `max_segments`."""
    region = find_region(gray, lossy=lossy, box_of=line_box)
    ink = ink_map(region.pixels, lossy=lossy)
    labels, pieces = labelled_pieces(ink, NOISE_FLOOR)
    parts = _joined(pieces)
    if not parts:
        raise NoInk("the image is uniform: no digit found")
    if len(parts) > max_segments:  # before any splitting or placing: a noisy page is cheap
        raise TooManySegments(_too_many(len(parts), max_segments))
    line = _line_height(parts)
    width = _digit_width(parts, line)
    parts = [cut for part in parts for cut in _split(part, ink, labels, line, width)]
    if len(parts) > max_segments:
        raise TooManySegments(_too_many(len(parts), max_segments))
    parts.sort(key=lambda part: part.left + part.right)
    segments = []
    for part in parts:
        own = _own_ink(part, ink, labels)
        frame = place(own).reshape(IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
        scale = region.scale
        box = (
            region.top + part.top * scale,
            region.top + part.bottom * scale,
            region.left + part.left * scale,
            region.left + part.right * scale,
        )
        segments.append(Segment(frame, box, mark=part.height <= MARK_HEIGHT * line))
    return segments


def _too_many(count: int, limit: int) -> str:
    return (
        f"the image holds at least {count} separate marks, more than the {limit} a reading "
        "may have (GATEWAY_MAX_DIGITS_PER_IMAGE): send one line of digits"
    )


def _joined(pieces: np.ndarray) -> list[_Part]:
    """Pieces without the dust, those sharing columns joined into one part each."""
    if len(pieces) == 0:
        return []
    heaviest = float(pieces[:, 0].max())
    parts: list[_Part] = []
    for index in np.argsort(-pieces[:, 0], kind="stable"):
        mass, top, bottom, left, right = (float(value) for value in pieces[index])
        if mass < DUST_SHARE * heaviest:
            break  # heaviest first: the rest is dust too
        piece = _Part({int(index) + 1}, int(top), int(bottom), int(left), int(right), mass)
        for part in parts:
            overlap = min(part.right, piece.right) - max(part.left, piece.left)
            if overlap >= JOIN_OVERLAP * min(part.width, piece.width):
                part.labels |= piece.labels
                part.top, part.bottom = min(part.top, piece.top), max(part.bottom, piece.bottom)
                part.left, part.right = min(part.left, piece.left), max(part.right, piece.right)
                part.mass += piece.mass
                break
        else:
            parts.append(piece)
    return parts


def _line_height(parts: list[_Part]) -> float:
    heaviest = max(part.mass for part in parts)
    return float(np.median([part.height for part in parts if part.mass >= LINE_SHARE * heaviest]))


def _digit_width(parts: list[_Part], line: float) -> float:
    """A digit's width in this line: the median of the parts that are one digit (as tall
    as the line, not too wide), else DIGIT_ASPECT of the line's height."""
    single = [
        part.width
        for part in parts
        if part.height > MARK_HEIGHT * line and part.width <= SPLIT_ASPECT * max(part.height, line)
    ]
    return float(np.median(single)) if single else DIGIT_ASPECT * line


def _split(
    part: _Part, ink: np.ndarray, labels: np.ndarray, line: float, digit_width: float
) -> list[_Part]:
    """A part as wide as several digits cut into them at the columns of least ink."""
    height = max(part.height, line)
    if part.height <= MARK_HEIGHT * line or part.width <= SPLIT_ASPECT * height:
        return [part]
    count = max(2, round(part.width / digit_width))
    profile = _own_ink(part, ink, labels).sum(axis=0)
    step = part.width / count
    window = max(1, round(CUT_WINDOW * step))
    cuts = [0]
    for k in range(1, count):
        target = round(k * step)
        low, high = max(cuts[-1] + 1, target - window), min(part.width - 1, target + window)
        if low > high:
            continue
        columns = np.arange(low, high + 1)
        # The least ink, and of equals the column nearest the even cut.
        cuts.append(
            int(columns[np.lexsort((np.abs(columns - target), profile[low : high + 1]))[0]])
        )
    cuts.append(part.width)
    cut_parts = []
    for start, stop in itertools.pairwise(cuts):
        own = _own_ink(part, ink, labels)[:, start:stop]
        rows = np.flatnonzero(own.max(axis=1) > NOISE_FLOOR)
        if len(rows) == 0:
            continue
        cut_parts.append(
            _Part(
                part.labels,
                part.top + int(rows[0]),
                part.top + int(rows[-1]) + 1,
                part.left + start,
                part.left + stop,
                float(own.sum()),
            )
        )
    return cut_parts or [part]


def _own_ink(part: _Part, ink: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The part's box of the ink map holding only the part's own pieces."""
    box = (slice(part.top, part.bottom), slice(part.left, part.right))
    own = np.isin(labels[box], list(part.labels))
    return np.where(own, ink[box], np.float32(0))

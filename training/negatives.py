"""Negative examples: images that hold no digit, made by the training job itself.

The model learns an eleventh class, "not a digit" (outlier exposure with an extra class),
so that the gateway can answer "I can't read that" for a letter, a symbol, a scribble or
a photo instead of the digit it resembles most. Nothing is downloaded: letters and
symbols are rendered from the fonts Debian packages install (fonts-dejavu-core and
friends), photos are cropped from the sample images matplotlib ships, and everything else
(pen strokes, scribbles, arrows, shapes, grids, textures, noise) is drawn here with numpy and PIL.

Every raw image then goes through the gateway's own preprocessing
(`serving.preprocessing.mnist_like`), one pipeline and not a copy, so the model sees a
negative exactly as the gateway will hand it over; an image the gateway would reject as
uniform (NoInk) never becomes a negative and is drawn again.

What is drawn must not look like a digit, or the model learns to reject real digits:
glyphs a reader could take for one (O, Q, D; I, l, J, |, /; Z; S, $; b, G; B; g, q) are
left out of every table, scribbles have several strokes or many turns (never one straight
line, never one oval), outlines of boxes come crossed, circles only filled and in company,
and whatever the gateway makes of a negative, it is never one upright stroke (a 1).

Each image is drawn from its own random stream, keyed by (seed, index, attempt): the same
seed gives the same negatives, and a longer run starts with the shorter one.
"""

import gzip
import logging
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from contract import IMAGE_SIZE, PIXEL_MAX
from serving.errors import NoInk
from serving.preprocessing import mnist_like

log = logging.getLogger(__name__)

NEGATIVE_KINDS = (
    "font_letter",
    "font_symbol",
    "pen_letter",
    "scribble",
    "arrow",
    "shape",
    "grid",
    "texture",
    "noise",
    "photo_crop",
)
FONT_KINDS = ("font_letter", "font_symbol")
# The one package that gives the font kinds something to render, named in the warning.
FONT_PACKAGE = "fonts-dejavu-core"

# Letters no one would read as a digit. Left out: O o Q D (0), I l i j J (1), Z z (2),
# S s (5), b G (6), B (8), g q (9), d (a mirrored b); Greek and Cyrillic likewise
# (no Θ Φ Ω ο σ θ φ for 0, ε ξ ζ З Э for 3, Ч for 4, Б б ъ ь for 6, β δ В for 8).  # noqa: RUF003
LATIN_LETTERS = "ACEFHKLMNPRTUVWXYacefhkmnprtuvwxy"
OTHER_LETTERS = "ΓΛΞΠΣΨλμπτψωЖДИЛЯЦШЩжилцшщя"
LETTERS = LATIN_LETTERS + OTHER_LETTERS
# Latin letters most of the time: what a user is most likely to type or draw.
LATIN_SHARE = 0.7
# Symbols, same rule. Left out: | / \ ! ( ) [ ] { } and vertical arrows (tall single
# strokes: 1), $ § (5, 8), ∞ (8), ∂ (6), dots and dashes (a blob or a bar), and outlined
# circles, triangles and cards (♡ ♢ ∆ ⊕ ☯: 0), and what shrinks into a ring when
# small (☻, ☼: 0).
SYMBOLS = "#%&*+=?@~<>^" + "←→↔⇐⇒⇔★☆✦✧✱✳❄✿✚✖✗✘✓✔♥♦♣♠☺☀⚑✈☎⌘≠≈±×÷≡√∑∏∀⚠♫♻✉"  # noqa: RUF001


def _arc(cx, cy, rx, ry, start_degrees, end_degrees, steps=14) -> list[tuple[float, float]]:
    """Points along an elliptical arc in the unit box (y downwards: 90 degrees is down)."""
    angles = np.radians(np.linspace(start_degrees, end_degrees, steps))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Pen skeletons: strokes as polylines in a unit box (x, y), y downwards, drawn as someone
# would with a mouse or a finger. No bare closed outline (a box, a house, a heart): drawn
# by hand, it is a 0.
PEN_LETTERS: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0.1, 1), (0.5, 0), (0.9, 1)], [(0.27, 0.6), (0.73, 0.6)]],
    "E": [[(0.85, 0), (0.15, 0), (0.15, 1), (0.85, 1)], [(0.15, 0.5), (0.7, 0.5)]],
    "F": [[(0.85, 0), (0.15, 0), (0.15, 1)], [(0.15, 0.48), (0.7, 0.48)]],
    "H": [[(0.15, 0), (0.15, 1)], [(0.85, 0), (0.85, 1)], [(0.15, 0.5), (0.85, 0.5)]],
    "K": [[(0.2, 0), (0.2, 1)], [(0.85, 0), (0.2, 0.6)], [(0.38, 0.45), (0.85, 1)]],
    "L": [[(0.2, 0), (0.2, 1), (0.85, 1)]],
    "k": [[(0.2, 0), (0.2, 1)], [(0.75, 0.35), (0.2, 0.75)], [(0.4, 0.6), (0.8, 1)]],
    "M": [[(0.1, 1), (0.15, 0), (0.5, 0.65), (0.85, 0), (0.9, 1)]],
    "N": [[(0.15, 1), (0.15, 0), (0.85, 1), (0.85, 0)]],
    "T": [[(0.05, 0), (0.95, 0)], [(0.5, 0), (0.5, 1)]],
    "V": [[(0.1, 0), (0.5, 1), (0.9, 0)]],
    "W": [[(0.05, 0), (0.28, 1), (0.5, 0.3), (0.72, 1), (0.95, 0)]],
    "X": [[(0.1, 0), (0.9, 1)], [(0.9, 0), (0.1, 1)]],
    "Y": [[(0.1, 0), (0.5, 0.5), (0.9, 0)], [(0.5, 0.5), (0.5, 1)]],
    "h": [[(0.2, 0), (0.2, 1)], [(0.2, 0.7), *_arc(0.5, 0.7, 0.3, 0.3, 180, 360), (0.8, 1)]],
    "n": [[(0.2, 0.35), (0.2, 1)], [(0.2, 0.7), *_arc(0.5, 0.65, 0.3, 0.3, 180, 360), (0.8, 1)]],
    "m": [
        [(0.05, 0.35), (0.05, 1)],
        [(0.05, 0.65), *_arc(0.275, 0.6, 0.225, 0.25, 180, 360), (0.5, 1)],
        [(0.5, 0.65), *_arc(0.725, 0.6, 0.225, 0.25, 180, 360), (0.95, 1)],
    ],
}
PEN_SYMBOLS: dict[str, list[list[tuple[float, float]]]] = {
    "#": [
        [(0.35, 0), (0.25, 1)],
        [(0.75, 0), (0.65, 1)],
        [(0.05, 0.33), (0.95, 0.33)],
        [(0.05, 0.67), (0.95, 0.67)],
    ],
    "+": [[(0.5, 0.05), (0.5, 0.95)], [(0.05, 0.5), (0.95, 0.5)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "star": [[(0.5, 0), (0.2, 1), (0.95, 0.35), (0.05, 0.35), (0.8, 1), (0.5, 0)]],
    "arrow_right": [[(0.05, 0.5), (0.95, 0.5)], [(0.65, 0.2), (0.95, 0.5), (0.65, 0.8)]],
    "arrow_left": [[(0.95, 0.5), (0.05, 0.5)], [(0.35, 0.2), (0.05, 0.5), (0.35, 0.8)]],
    "check": [[(0.05, 0.55), (0.35, 0.95), (0.95, 0.05)]],
    "smiley": [
        _arc(0.5, 0.5, 0.48, 0.48, -90, 275, 28),
        [(0.35, 0.33), (0.35, 0.4)],
        [(0.65, 0.33), (0.65, 0.4)],
        _arc(0.5, 0.52, 0.26, 0.22, 20, 160),
    ],
    "sun": [
        _arc(0.5, 0.5, 0.22, 0.22, 0, 365, 20),
        *[
            [
                (0.5 + 0.32 * math.cos(a), 0.5 + 0.32 * math.sin(a)),
                (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)),
            ]
            for a in np.radians(np.arange(0, 360, 45))
        ],
    ],
    "wave": [[(x, 0.5 + 0.25 * math.sin(x * 5 * math.pi)) for x in np.linspace(0, 1, 30)]],
}
PEN_STROKES = {**PEN_LETTERS, **PEN_SYMBOLS}

FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
FONT_DIRECTORIES = ("/usr/share/fonts", "~/.fonts", "~/.local/share/fonts")
# One font in this many (by sorted file name) is held out of training, so that the
# validation and test figures come from fonts the model never saw.
HELD_OUT_EVERY = 4
# Fonts are rendered at one of these sizes, then scaled to the size wanted: a few cached
# faces give every size.
FONT_RENDER_SIZES = (16, 22, 32, 44, 64, 90, 128)
GLYPH_PROBE_SIZE = 24  # big enough to tell a glyph from the missing-glyph box
# A code point no font has: what the font draws for a glyph it lacks (its .notdef box).
NOT_A_CHARACTER = "\U0010fffd"
# Symbol and dingbat fonts (Standard Symbols PS, Zapf Dingbats' D050000L) put their
# symbols on the ASCII code points, so their "A" is an Alpha and their "m" a circle: a
# text font is recognised by punctuation every text encoding since Windows-1252 has.
TEXT_FONT_PROBES = "\u20ac\u0152\u2013\u2018"  # euro sign, OE, en dash, left quote

# Raw image sides: log-uniform from MIN_SIDE to LARGE_SIDE, and for a minority from there
# to MAX_SIDE. Small and large images both occur; the gateway fits either into the same
# box, and a large one costs it several times as much.
MIN_SIDE, LARGE_SIDE, MAX_SIDE = 28, 80, 200
LARGE_SHARE = 0.25
MAX_ASPECT = 1.35
# Both polarities: dark ink on light paper (a scan, a photo of a page) more often than
# light ink on dark (the drawing page's canvas, MNIST itself).
LIGHT_PAPER_SHARE = 0.65
MIN_CONTRAST, MAX_CONTRAST = 0.35, 0.95
# Uneven light (a gradient over the paper) and grain (sensor or paper noise, in units of
# full scale), each sometimes: the gateway then estimates the paper, its costliest path.
SHADING_SHARE, MAX_SHADING = 0.12, 0.2
GRAIN_SHARE, MAX_GRAIN = 0.12, 0.05
BLUR_SHARE = 0.25  # out of focus, or a soft pen
# A pen line or an outline, as a fraction of the drawing's longer side: mostly as bold
# as MNIST's strokes (about an eighth of the digit), sometimes a hairline, which the
# gateway thickens (its slower path: hairlines are a minority).
PEN_WIDTH, HAIRLINE_WIDTH, HAIRLINE_SHARE = (0.09, 0.18), (0.025, 0.08), 0.25
SCRIBBLE_PEN = 0.6  # a doodle crosses itself: a finer pen, or it is a blot
# Share of doodles drawn with a pressure-sensitive pen, and the range of its width as a
# multiple of the pen's.
PRESSED_SHARE, PRESSURE_RANGE = 0.5, (0.35, 1.4)
# Arrows: straight and bent shafts lie this close to the horizontal (steeper, a short
# head on a long shaft reads as a 1 or a 7); circling ones sweep at most this far.
ARROW_MAX_TILT_DEGREES = 60
ARROW_MAX_SWEEP_DEGREES = 300
# Several words sometimes, not only single glyphs: a label, a signature, a word.
WORD_SHARE = 0.15
# A 1 is a single elongated stroke: the minor/major axis ratio of its ink (from the
# second moments) lies below this for nearly every 1 of the committed MNIST sample and
# above it for nearly every other digit. A negative as elongated, and upright to within
# this tilt, would teach the model that a 1 is not a digit: it is drawn again, as is an
# image the gateway reads as uniform, up to MAX_ATTEMPTS times.
ONE_LIKE_ELONGATION = 0.3
ONE_LIKE_MAX_TILT_DEGREES = 45
MAX_ATTEMPTS = 50

# Independent random streams: the order of kinds, and each image.
_ORDER_STREAM, _IMAGE_STREAM, _TYPED_DIGIT_STREAM, _COARSE_DIGIT_STREAM = 0, 1, 2, 3

Box = tuple[float, float, float, float]  # left, top, width, height in pixels


@dataclass(frozen=True)
class _Sources:
    """What the drawers can use: fonts by kind (path and the glyphs it has), photos."""

    letter_fonts: tuple[tuple[str, str], ...]
    symbol_fonts: tuple[tuple[str, str], ...]
    photos: tuple[Image.Image, ...]


def font_files() -> list[Path]:
    """TrueType and OpenType fonts on this machine, sorted: fontconfig's list when
    fc-list is there, else a walk of the usual font directories."""
    found: set[Path] = set()
    listed = _fc_list()
    if listed is not None:
        found.update(Path(line) for line in listed.splitlines() if line.strip())
    else:
        for directory in FONT_DIRECTORIES:
            root = Path(os.path.expanduser(directory))
            if root.is_dir():
                found.update(path for path in root.rglob("*") if path.is_file())
    return sorted(path for path in found if path.suffix.lower() in FONT_SUFFIXES and path.is_file())


def _fc_list() -> str | None:
    if shutil.which("fc-list") is None:
        return None
    try:
        result = subprocess.run(
            ["fc-list", "--format", "%{file}\n"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout


def split_fonts(fonts: Sequence[Path | str]) -> tuple[list[Path], list[Path]]:
    """(training fonts, held-out fonts): every HELD_OUT_EVERY-th by sorted file name is
    held out, at least one where there are two or more. A single font serves both."""
    ordered = sorted({Path(font) for font in fonts}, key=lambda path: (path.name, str(path)))
    if len(ordered) < 2:
        return ordered, list(ordered)
    held_out = ordered[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY] or ordered[-1:]
    return [font for font in ordered if font not in held_out], held_out


def raw_negatives(
    count: int, seed: int, *, fonts: Sequence[Path] | None = None
) -> list[tuple[str, np.ndarray]]:
    """`count` raw negatives with their kinds: uint8 grayscale arrays of varied sizes,
    either polarity, kinds mixed evenly; every one has ink for the gateway. `fonts`:
    the fonts to render letters and symbols with (default: all on the machine); without
    any, those are drawn with the pen instead (kind pen_letter)."""
    return [(kind, raw) for kind, raw, _frame in _negatives(count, seed, fonts)]


def mnist_like_negatives(
    count: int, seed: int, *, fonts: Sequence[Path] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`count` negatives as the model sees them: uint8 [count, 28, 28], bright ink on
    dark (the gateway's `mnist_like` of each raw negative), and the kind of each row.
    The same seed gives raw_negatives' images, one to one."""
    images = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    kinds = np.zeros(count, dtype=f"<U{max(map(len, NEGATIVE_KINDS))}")
    for row, (kind, _raw, frame) in enumerate(_negatives(count, seed, fonts)):
        images[row] = np.rint(frame[..., 0] * PIXEL_MAX)
        kinds[row] = kind
    return images, kinds


def _negatives(
    count: int, seed: int, fonts: Sequence[Path] | None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, raw uint8 image, the gateway's float32 [28, 28, 1] of it), `count` times."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    sources = _sources(font_files() if fonts is None else fonts)
    entropy = seed % 2**64  # SeedSequence takes no negative numbers
    for index, kind in enumerate(_kind_order(count, entropy)):
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([entropy, _IMAGE_STREAM, index, attempt])
            drawn_kind, raw = _draw(kind, rng, sources)
            try:
                frame = mnist_like(raw.astype(np.float32) / PIXEL_MAX)
            except NoInk:
                continue
            if _looks_like_a_one(frame[..., 0]):
                continue
            yield drawn_kind, raw, frame
            break
        else:
            raise RuntimeError(f"{kind}: {MAX_ATTEMPTS} images in a row unusable as negatives")


def _looks_like_a_one(frame: np.ndarray) -> bool:
    """Whether the ink of a [28, 28] frame is one elongated, roughly upright stroke."""
    total, row_sum, col_sum, row_row, col_col, row_col = (
        float(moment) for moment in frame.reshape(-1) @ _MOMENT_BASIS
    )
    if total <= 0:
        return False
    mean_row, mean_col = row_sum / total, col_sum / total
    var_row = row_row / total - mean_row * mean_row
    var_col = col_col / total - mean_col * mean_col
    covariance = row_col / total - mean_row * mean_col
    spread = math.hypot((var_row - var_col) / 2, covariance)
    major, minor = (var_row + var_col) / 2 + spread, (var_row + var_col) / 2 - spread
    if major <= 0 or math.sqrt(max(minor, 0.0) / major) >= ONE_LIKE_ELONGATION:
        return False
    # The major axis' angle from the vertical (rows run downwards).
    tilt = math.degrees(0.5 * math.atan2(2 * covariance, var_row - var_col))
    return abs(tilt) <= ONE_LIKE_MAX_TILT_DEGREES


# Pixel weights of the ink's moments, one column each: 1, row, col, row^2, col^2, row*col.
_ROWS, _COLS = (axis.reshape(-1).astype(np.float64) for axis in np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE])
_MOMENT_BASIS = np.column_stack(
    [np.ones_like(_ROWS), _ROWS, _COLS, _ROWS**2, _COLS**2, _ROWS * _COLS]
).astype(np.float32)


def _kind_order(count: int, entropy: int) -> list[str]:
    """Every kind once per round, in a shuffled order each round: counts even to within
    one, and the order of a longer run starts with that of a shorter one."""
    order: list[str] = []
    for round_index in range(-(-count // len(NEGATIVE_KINDS))):
        rng = np.random.default_rng([entropy, _ORDER_STREAM, round_index])
        order.extend(NEGATIVE_KINDS[i] for i in rng.permutation(len(NEGATIVE_KINDS)))
    return order[:count]


def _sources(fonts: Sequence[Path | str]) -> _Sources:
    tables = [(str(path), *_font_glyphs(str(path))) for path in fonts]
    letter_fonts = tuple((path, letters) for path, letters, _ in tables if letters)
    symbol_fonts = tuple((path, symbols) for path, _, symbols in tables if symbols)
    if not letter_fonts or not symbol_fonts:
        # Once a call: a training job that makes its negatives says it once, not per image.
        log.warning(
            "no usable TrueType/OpenType font among the %d given or found: the letters and "
            "symbols among the negatives are drawn with the pen instead; install the Debian "
            "package %s (make system-deps)",
            len(tables),
            FONT_PACKAGE,
        )
    photos = _photos()
    if not photos:
        log.warning("no sample images (matplotlib's sample_data): photo crops become textures")
    return _Sources(letter_fonts, symbol_fonts, photos)


@cache
def _font_glyphs(path: str) -> tuple[str, str]:
    """(letters, symbols) of the tables that this font really draws: neither a missing
    glyph's box nor, in a symbol font, a dingbat in a letter's place."""
    try:
        font = ImageFont.truetype(path, GLYPH_PROBE_SIZE)
    except OSError:
        return "", ""
    missing = _bitmap(font, NOT_A_CHARACTER)

    def draws(character: str) -> bool:
        bitmap = _bitmap(font, character)
        return bitmap != missing and any(bitmap[1])

    if sum(map(draws, TEXT_FONT_PROBES)) < 2:
        return "", ""
    return "".join(filter(draws, LETTERS)), "".join(filter(draws, SYMBOLS))


def _bitmap(font: ImageFont.FreeTypeFont, character: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(character)
    return mask.size, np.asarray(mask).tobytes()


@lru_cache(maxsize=512)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    """The photographs and scans matplotlib ships, as float grayscale images in [0, 1].

    Left out: its logo (the letters of "matplotlib", o and l among them)."""
    try:
        import matplotlib
    except ImportError:
        return ()
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    loaders: dict[str, Callable[[Path], np.ndarray]] = {
        "grace_hopper.jpg": _picture,
        "Minduka_Present_Blue_Pack.png": _picture,  # a present, on transparency
        "s1045.ima.gz": _mri_slice,  # a head, 256x256 16-bit big-endian
        "jacksboro_fault_dem.npz": lambda path: _npz_array(path, "elevation"),  # terrain
        "topobathy.npz": lambda path: _npz_array(path, "topo"),
    }
    photos = []
    for name, load in loaders.items():
        try:
            values = load(sample_data / name).astype(np.float32)
        except (OSError, KeyError, ValueError):
            continue
        low, high = np.percentile(values, (1, 99))
        if high > low:
            stretched = np.clip((values - low) / (high - low), 0.0, 1.0)
            photos.append(Image.fromarray(stretched.astype(np.float32), mode="F"))
    return tuple(photos)


def _picture(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("L"))


def _mri_slice(path: Path) -> np.ndarray:
    with gzip.open(path) as stream:
        return np.frombuffer(stream.read(), ">u2").reshape(256, 256)


def _npz_array(path: Path, key: str) -> np.ndarray:
    with np.load(path) as data:
        return data[key]


# Drawing. Most drawers produce a coverage mask (PIL 'L', 255 where the ink is) that
# _on_paper turns into a grayscale image; noise and photos are grayscale from the start.


def _draw(kind: str, rng: np.random.Generator, sources: _Sources) -> tuple[str, np.ndarray]:
    """(the kind actually drawn, uint8 grayscale image)."""
    height, width = _canvas_size(rng)
    if kind == "font_letter" and sources.letter_fonts:
        return kind, _on_paper(_rendered_text(rng, height, width, sources.letter_fonts), rng)
    if kind == "font_symbol" and sources.symbol_fonts:
        return kind, _on_paper(_rendered_text(rng, height, width, sources.symbol_fonts), rng)
    if kind in FONT_KINDS:  # no font: the pen draws the same sort of thing
        table = PEN_LETTERS if kind == "font_letter" else PEN_SYMBOLS
        return "pen_letter", _on_paper(_pen_strokes(rng, height, width, table), rng)
    if kind == "photo_crop" and not sources.photos:
        kind = "texture"
    if kind == "photo_crop":
        return kind, _degrade(_photo_crop(rng, height, width, sources.photos), rng)
    if kind == "noise":
        return kind, _noise(rng, height, width)
    drawers = {
        "pen_letter": lambda: _pen_strokes(rng, height, width, PEN_STROKES),
        "scribble": lambda: _scribble(rng, height, width),
        "arrow": lambda: _arrow(rng, height, width),
        "shape": lambda: _shapes(rng, height, width),
        "grid": lambda: _grid(rng, height, width),
        "texture": lambda: _texture(rng, height, width),
    }
    return kind, _on_paper(drawers[kind](), rng)


def _canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    low, high = (LARGE_SIDE, MAX_SIDE) if rng.random() < LARGE_SHARE else (MIN_SIDE, LARGE_SIDE)
    side = math.exp(rng.uniform(math.log(low), math.log(high)))
    aspect = math.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
    height = min(MAX_SIDE, max(MIN_SIDE, round(side * math.sqrt(aspect))))
    width = min(MAX_SIDE, max(MIN_SIDE, round(side / math.sqrt(aspect))))
    return height, width


def _content_box(rng: np.random.Generator, height: int, width: int, low=0.35, high=0.95) -> Box:
    """Where the drawing goes: a random fraction of the canvas at a random place."""
    box_width = width * rng.uniform(low, high)
    box_height = height * rng.uniform(low, high)
    left = rng.uniform(0, width - box_width)
    top = rng.uniform(0, height - box_height)
    return left, top, box_width, box_height


def _pen_width(rng: np.random.Generator, box: Box) -> int:
    """As a fraction of the drawing's longer side, the one the gateway fits to its box."""
    fraction = HAIRLINE_WIDTH if rng.random() < HAIRLINE_SHARE else PEN_WIDTH
    return max(1, round(max(box[2], box[3]) * rng.uniform(*fraction)))


def _on_paper(mask: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Coverage mask ('L', 255 where the ink is) -> uint8 grayscale: ink on paper of
    either polarity, any contrast, sometimes soft, unevenly lit or grainy."""
    contrast = rng.uniform(MIN_CONTRAST, MAX_CONTRAST)
    if rng.random() < LIGHT_PAPER_SHARE:
        paper = rng.uniform(1.0 - (1.0 - contrast) * 0.6, 1.0)
        ink = paper - contrast
    else:
        paper = rng.uniform(0.0, (1.0 - contrast) * 0.6)
        ink = paper + contrast
    if rng.random() < BLUR_SHARE:  # blurring the mask blurs the image: the map is affine
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
    # Coverage to gray level as one lookup table (numpy's: PIL's rounds it in Python).
    gray = _to_uint8(paper + (ink - paper) * _COVERAGE_LEVELS)[np.asarray(mask)]
    if rng.random() < SHADING_SHARE:
        height, width = gray.shape
        angle = rng.uniform(0, 2 * math.pi)
        rows = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        cols = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
        gradient = math.cos(angle) * cols + math.sin(angle) * rows
        gray = _to_uint8(gray / np.float32(PIXEL_MAX) + rng.uniform(0, MAX_SHADING) * gradient)
    # Grain in proportion to the ink's contrast: faint ink under strong grain is lost to
    # the gateway (the grain becomes the drawing, a block), the same block every time.
    return _grainy(gray, rng, contrast)


_COVERAGE_LEVELS = np.arange(256, dtype=np.float32) / np.float32(PIXEL_MAX)


def _degrade(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur and grain, each sometimes, on a uint8 grayscale image."""
    if rng.random() < BLUR_SHARE:
        blurred = Image.fromarray(gray).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
        gray = np.asarray(blurred)
    return _grainy(gray, rng)


def _grainy(gray: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    if rng.random() < GRAIN_SHARE:
        sigma = rng.uniform(0, MAX_GRAIN) * scale
        grain = rng.standard_normal(gray.shape, dtype=np.float32) * sigma
        gray = _to_uint8(gray / np.float32(PIXEL_MAX) + grain)
    return gray


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(gray, 0.0, 1.0) * PIXEL_MAX).astype(np.uint8)


def _mask(coverage: np.ndarray) -> Image.Image:
    """Coverage map (float, 1 where the ink is) -> coverage mask ('L', 255)."""
    return Image.fromarray(_to_uint8(np.asarray(coverage, dtype=np.float32)))


def _rendered_text(
    rng: np.random.Generator, height: int, width: int, fonts: tuple[tuple[str, str], ...]
) -> Image.Image:
    """A glyph (sometimes a short word) of one font, at a random size, place, weight
    (outline stroke) and slant."""
    path, glyphs = fonts[int(rng.integers(len(fonts)))]
    latin = [glyph for glyph in glyphs if glyph in LATIN_LETTERS]
    pool = latin if latin and rng.random() < LATIN_SHARE else glyphs
    length = int(rng.integers(2, 4)) if rng.random() < WORD_SHARE else 1
    text = "".join(pool[int(rng.integers(len(pool)))] for _ in range(length))
    return _typed(rng, height, width, path, text)


def _placed(
    rng: np.random.Generator, height: int, width: int, mask: Image.Image, box: Box
) -> Image.Image:
    """A mask slanted, its aspect a little off, scaled to fit the box and placed anywhere
    in it: the canvas's coverage mask, made by one affine resampling. (Plain floats: a
    2x2 matrix in numpy costs more than the resampling.)"""
    angle = math.radians(rng.uniform(-12, 12))
    stretch = rng.uniform(0.85, 1.15)
    cos, sin = math.cos(angle), math.sin(angle)
    # Mask pixels -> canvas pixels, before scaling: rotation times diag(stretch, 1).
    a, b, c, d = cos * stretch, -sin, sin * stretch, cos
    extent_x = abs(a) * mask.width + abs(b) * mask.height
    extent_y = abs(c) * mask.width + abs(d) * mask.height
    left, top, box_width, box_height = box
    scale = min(box_width / extent_x, box_height / extent_y)
    centre_x = left + scale * extent_x / 2 + rng.uniform(0, max(0.0, box_width - scale * extent_x))
    centre_y = top + scale * extent_y / 2 + rng.uniform(0, max(0.0, box_height - scale * extent_y))
    # PIL wants the inverse: for each canvas pixel, where to read the mask.
    det = scale * (a * d - b * c)
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    coefficients = (
        ia,
        ib,
        mask.width / 2 - ia * centre_x - ib * centre_y,
        ic,
        id_,
        mask.height / 2 - ic * centre_x - id_ * centre_y,
    )
    return mask.transform(
        (width, height), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR
    )


def _pen_strokes(
    rng: np.random.Generator,
    height: int,
    width: int,
    table: dict[str, list[list[tuple[float, float]]]],
) -> Image.Image:
    """A skeleton of the table drawn with a pen: jittered, slanted, wobbly strokes."""
    names = list(table)
    skeleton = table[names[int(rng.integers(len(names)))]]
    strokes = [
        _wobble(rng, np.asarray(stroke, np.float64) + rng.normal(0, 0.03, (len(stroke), 2)))
        for stroke in skeleton
    ]
    box = _content_box(rng, height, width, 0.4, 0.9)
    return _drawn(height, width, _fitted(rng, strokes, box), _pen_width(rng, box))


def _fitted(rng: np.random.Generator, strokes: list[np.ndarray], box: Box) -> list[np.ndarray]:
    """Strokes in unit coordinates, slanted, sheared and squashed as a hand does, then
    scaled (keeping their shape) to fit the box and placed anywhere in it: inside the
    canvas, never cut by its edge."""
    angle = math.radians(rng.uniform(-15, 15))
    squash = math.exp(rng.uniform(-0.25, 0.25))
    matrix = _rotation(angle) @ np.array([[squash, rng.uniform(-0.2, 0.2)], [0.0, 1.0]])
    shaped = [stroke @ matrix.T for stroke in strokes]
    points = np.vstack(shaped)
    low, extent = points.min(axis=0), np.maximum(np.ptp(points, axis=0), 1e-6)
    left, top, box_width, box_height = box
    scale = min(box_width / extent[0], box_height / extent[1])
    spare = (max(0.0, box_width - extent[0] * scale), max(0.0, box_height - extent[1] * scale))
    origin = (left + rng.uniform(0, spare[0]), top + rng.uniform(0, spare[1]))
    return [(stroke - low) * scale + origin for stroke in shaped]


def _drawn(height: int, width: int, strokes: list[np.ndarray], pen: int) -> Image.Image:
    """Polylines drawn with a round pen of `pen` pixels: the canvas's coverage map. The
    pen's reach is kept inside the canvas."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    margin = pen / 2 + 1.5  # PIL's wide lines reach half a pixel past half their width
    high = (max(margin, width - 1 - margin), max(margin, height - 1 - margin))
    for stroke in strokes:
        _line(draw, np.clip(stroke, margin, high), pen)
    return image


def _wobble(rng: np.random.Generator, points: np.ndarray, step: float = 0.1) -> np.ndarray:
    """A polyline resampled every `step` with a small tremor, as a hand draws it."""
    along = _arc_lengths(points)
    if along[-1] == 0:
        return points
    samples = np.linspace(0, along[-1], max(2, int(along[-1] / step) + 1))
    dense = _points_at(points, along, samples)
    return dense + rng.normal(0, 0.006, dense.shape)


def _arc_lengths(points: np.ndarray) -> np.ndarray:
    """The distance along a polyline from its start to each of its vertices."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])


def _points_at(points: np.ndarray, along: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The points of a polyline (its vertices' `_arc_lengths` `along`) at distances `samples`."""
    return np.column_stack([np.interp(samples, along, points[:, axis]) for axis in (0, 1)])


def _line(draw: ImageDraw.ImageDraw, points: np.ndarray, width: int) -> None:
    """A polyline with round joints and caps, as a pen leaves it: a disc at every vertex
    (cheaper than PIL's curved joints, the same to the eye)."""
    path = [(float(x), float(y)) for x, y in points]
    draw.line(path, fill=255, width=width)
    if width > 2:
        radius = width / 2
        for x, y in path:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)


def _scribble(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Doodles: several smooth random curves (long or short), a long zig-zag, or a row of
    loops; never one straight stroke or one oval. Half of them pressed unevenly: the
    pen's width swells and thins along each stroke."""
    style = int(rng.integers(4))
    if style == 0:
        strokes = [
            _smooth(rng.random((int(rng.integers(5, 9)), 2))) for _ in range(rng.integers(2, 5))
        ]
    elif style == 1:
        turns = int(rng.integers(5, 11))
        xs = np.linspace(0, 1, turns) + rng.normal(0, 0.03, turns)
        ys = np.where(np.arange(turns) % 2, 0.85, 0.15) + rng.normal(0, 0.08, turns)
        strokes = [np.column_stack([xs, ys])]
    elif style == 2:  # a prolate cycloid: the loops of someone trying a pen
        loops = int(rng.integers(3, 7))
        t = np.linspace(0, 2 * math.pi * loops, 24 * loops)
        radius = rng.uniform(1.3, 2.5)
        xs, ys = t - radius * np.sin(t), -radius * np.cos(t) * rng.uniform(0.5, 1.5)
        strokes = [np.column_stack([xs, ys])]
    else:  # a few short arcs, scattered or crossing
        strokes = [
            _smooth(rng.random((int(rng.integers(3, 5)), 2))) for _ in range(rng.integers(3, 6))
        ]
    box = _content_box(rng, height, width, 0.5, 0.95)
    pen = max(1, round(_pen_width(rng, box) * SCRIBBLE_PEN))
    fitted = _fitted(rng, strokes, box)
    if rng.random() < PRESSED_SHARE:
        return _pressed(rng, height, width, fitted, pen)
    return _drawn(height, width, fitted, pen)


def _pressed(
    rng: np.random.Generator, height: int, width: int, strokes: list[np.ndarray], pen: int
) -> Image.Image:
    """Strokes as a pressure-sensitive pen leaves them: discs every quarter of a pen
    along each, their width a random walk between PRESSURE_RANGE times the pen's."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    low, high = PRESSURE_RANGE
    for stroke in strokes:
        along = _arc_lengths(stroke)
        samples = np.arange(0.0, along[-1] + 1e-9, max(0.5, pen / 4))
        xs, ys = _points_at(stroke, along, samples).T
        # Width knots every two pens along the stroke, interpolated between.
        knots = np.arange(0.0, along[-1] + 2 * pen, 2 * pen)
        widths = np.interp(samples, knots, rng.uniform(low, high, len(knots)))
        radii = np.maximum(0.5, widths * pen / 2)
        margin = radii + 1.0
        xs = np.clip(xs, margin, np.maximum(margin, width - 1 - margin))
        ys = np.clip(ys, margin, np.maximum(margin, height - 1 - margin))
        for x, y, r in zip(xs.tolist(), ys.tolist(), radii.tolist(), strict=True):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return image


def _arrow(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """An arrow drawn with a pen: a straight, bent or circling shaft, an open or filled
    head at one end or both. Straight and bent shafts lie within ARROW_MAX_TILT_DEGREES
    of the horizontal (an upright stroke is a 1); a circling one sweeps at most
    ARROW_MAX_SWEEP_DEGREES, so that it never closes into a 0."""
    t = np.linspace(0.0, 1.0, 24)
    style = int(rng.integers(3))
    if style == 2:
        sweep = math.radians(rng.uniform(150, ARROW_MAX_SWEEP_DEGREES)) * rng.choice([-1, 1])
        angles = rng.uniform(0, 2 * math.pi) + t * sweep
        shaft = np.column_stack([np.cos(angles), np.sin(angles)])
    else:
        bow = rng.uniform(0.1, 0.35) * rng.choice([-1, 1]) if style == 1 else 0.0
        shaft = np.column_stack([t, 4 * bow * t * (1 - t)])
        tilt = math.radians(rng.uniform(-ARROW_MAX_TILT_DEGREES, ARROW_MAX_TILT_DEGREES))
        shaft = shaft @ _rotation(tilt + math.pi * (rng.random() < 0.5)).T
    length = float(np.ptp(shaft, axis=0).max()) * rng.uniform(0.15, 0.3)
    spread = rng.uniform(0.4, 0.9)
    heads = []
    ends = [(shaft[-1], shaft[-3]), (shaft[0], shaft[2])]
    for tip, before in ends[: 2 if rng.random() < 0.3 else 1]:
        direction = (tip - before) / max(float(np.linalg.norm(tip - before)), 1e-9)
        side = np.array([-direction[1], direction[0]]) * length * spread
        back = tip - direction * length
        heads.append(np.array([back + side, tip, back - side]))
    filled = rng.random() < 0.35
    box = _content_box(rng, height, width, 0.5, 0.95)
    pen = _pen_width(rng, box)
    fitted = _fitted(rng, [_wobble(rng, shaft), *heads], box)
    image = _drawn(height, width, fitted if not filled else fitted[:1], pen)
    if filled:
        draw = ImageDraw.Draw(image)
        for head in fitted[1:]:
            draw.polygon([(float(x), float(y)) for x, y in head], fill=255, outline=255)
    return image


def _smooth(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Chaikin's corner cutting: a polyline -> a smooth curve through the same region."""
    for _ in range(rounds):
        first, second = points[:-1], points[1:]
        cut = np.empty((2 * len(first), 2))
        cut[0::2] = 0.75 * first + 0.25 * second
        cut[1::2] = 0.25 * first + 0.75 * second
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


def _shapes(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Filled and outlined polygons, alone or in a group of several.

    A bare outline of a convex shape (a box, a triangle, a polygon) is a closed loop, a 0
    to the eye, and two stacked are an 8: such outlines come with spokes from the centre
    to every corner (a crossed box). Ellipses come filled and only in a group."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    box = _content_box(rng, height, width, 0.5, 0.95)
    left, top, box_width, box_height = box
    alone = rng.random() < 0.5
    for _ in range(1 if alone else int(rng.integers(2, 6))):
        share = rng.uniform(0.3, 0.5) if alone else rng.uniform(0.15, 0.3)
        radius = min(box_width, box_height) * share
        cx = left + rng.uniform(radius, max(radius, box_width - radius))
        cy = top + rng.uniform(radius, max(radius, box_height - radius))
        filled = rng.random() < 0.6
        names = SHAPES if alone else (*SHAPES, "ellipse")
        name = names[int(rng.integers(len(names)))]
        if name == "ellipse":
            ry = radius * rng.uniform(0.5, 1.0)
            draw.ellipse((cx - radius, cy - ry, cx + radius, cy + ry), fill=255)
            continue
        pen = _pen_width(rng, (0, 0, 2 * radius, 2 * radius))
        turn = _rotation(rng.uniform(0, 2 * math.pi))
        points = _polygon(rng, name) @ turn.T * radius + (cx, cy)
        path = [(float(x), float(y)) for x, y in points]
        draw.polygon(path, fill=255 if filled else None, outline=255, width=pen)
        if not filled and name in CONVEX_SHAPES:
            for corner in path:
                draw.line([(cx, cy), corner], fill=255, width=pen)
    return image


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


SHAPES = ("rectangle", "triangle", "polygon", "star", "cross", "arrow")
CONVEX_SHAPES = ("rectangle", "triangle", "polygon")


def _polygon(rng: np.random.Generator, name: str) -> np.ndarray:
    """Vertices of a named shape around the origin, radius about 1."""
    if name == "rectangle":  # never a thin bar: that is a 1
        aspect = rng.uniform(0.5, 1.0)
        return np.array([(-1, -aspect), (1, -aspect), (1, aspect), (-1, aspect)], float)
    if name == "triangle":
        angles = np.radians(np.array([-90, 30, 150]) + rng.normal(0, 8, 3))
        return np.column_stack([np.cos(angles), np.sin(angles)])
    if name == "star":
        points = int(rng.integers(5, 9))
        angles = np.linspace(0, 2 * math.pi, 2 * points, endpoint=False)
        radii = np.where(np.arange(2 * points) % 2, rng.uniform(0.38, 0.6), 1.0)
        return np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
    if name == "cross":
        arm = rng.uniform(0.2, 0.35)
        quarter = [(arm, arm), (arm, 1), (-arm, 1)]
        return np.vstack([np.array(quarter) @ _rotation(k * math.pi / 2).T for k in range(4)])
    if name == "arrow":
        shaft, head = rng.uniform(0.15, 0.3), rng.uniform(0.45, 0.7)
        neck = rng.uniform(0.0, 0.4)
        return np.array(
            [
                (-1, -shaft),
                (neck, -shaft),
                (neck, -head),
                (1, 0),
                (neck, head),
                (neck, shaft),
                (-1, shaft),
            ]
        )
    sides = int(rng.integers(5, 9))  # an irregular polygon
    angles = np.linspace(0, 2 * math.pi, sides, endpoint=False) + rng.normal(0, 0.15, sides)
    radii = rng.uniform(0.7, 1.0, sides)
    return np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])


def _grid(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Ruled lines, grids, hatching, cross-hatching, checkerboards and dot lattices, over
    the whole canvas or a part of it; always at least three lines or cells across."""
    if rng.random() < 0.5:
        left, top, box_width, box_height = 0, 0, width, height
    else:
        left, top, box_width, box_height = (round(v) for v in _content_box(rng, height, width, 0.5))
    rows = np.arange(box_height, dtype=np.float32)[:, None] - box_height / 2
    cols = np.arange(box_width, dtype=np.float32)[None, :] - box_width / 2
    style = int(rng.integers(6))
    # Ruled paper is level, hatching slanted, the others at any angle.
    angle = {0: rng.uniform(-0.15, 0.15), 2: rng.uniform(0.4, 1.2)}.get(
        style, rng.uniform(0, math.pi)
    )
    u = cols * math.cos(angle) + rows * math.sin(angle)
    v = rows * math.cos(angle) - cols * math.sin(angle)
    # At least three lines across, none so thin that the gateway must thicken them.
    spacing = min(box_width, box_height) * rng.uniform(0.18, 0.33)
    line = max(1.5, spacing * rng.uniform(0.38, 0.6))

    def lines(across: np.ndarray, period: float) -> np.ndarray:  # anti-aliased stripes
        distance = np.abs((across + rng.uniform(0, period)) % period - period / 2)
        return np.clip(line / 2 - distance + 0.5, 0, 1)

    if style in (0, 2):  # ruled paper, hatching
        pattern = lines(v, spacing)
    elif style == 1:  # grid
        pattern = np.maximum(lines(u, spacing), lines(v, spacing))
    elif style == 3:  # cross-hatching
        across = rows * math.cos(angle + 1.2) - cols * math.sin(angle + 1.2)
        pattern = np.maximum(lines(v, spacing), lines(across, spacing * rng.uniform(0.8, 1.2)))
    elif style == 4:  # checkerboard
        pattern = ((np.floor(u / spacing) + np.floor(v / spacing)) % 2).astype(np.float32)
    else:  # dots
        du = (u % spacing) - spacing / 2
        dv = (v % spacing) - spacing / 2
        pattern = np.clip(line - np.hypot(du, dv) + 0.5, 0, 1)
    coverage = np.zeros((height, width), np.float32)
    coverage[top : top + box_height, left : left + box_width] = pattern
    return _mask(coverage)


def _texture(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Blotches (smooth noise thresholded), clouds (smooth noise), scattered blobs and
    dots, or wood grain: textures with no single shape in them."""
    style = int(rng.integers(4))
    if style in (0, 1):
        cells = int(rng.integers(3, 12))
        field = _smooth_noise(rng, height, width, cells)
        if style == 0:
            return _mask(field > np.quantile(field, rng.uniform(0.45, 0.85)))
        clouds = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
        return _mask(clouds ** rng.uniform(0.7, 2.0))
    if style == 2:
        image = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(image)
        side = min(height, width)
        for _ in range(int(rng.integers(8, 60))):
            rx, ry = side * rng.uniform(0.03, 0.1, 2)
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        return image
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    warp = _smooth_noise(rng, height, width, int(rng.integers(2, 6))) * rng.uniform(4, 12)
    period = min(height, width) * rng.uniform(0.12, 0.25)
    phase = (cols * math.cos(rng.uniform(0, math.pi)) + rows * 0.3 + warp) * (2 * math.pi / period)
    return _mask(np.sin(phase) > rng.uniform(-0.3, 0.5))


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise: a coarse random grid upscaled smoothly (Perlin's poor cousin)."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    smooth = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(smooth, dtype=np.float32)


def _noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Gaussian noise, pixel-fine or in coarse grains, or salt and pepper in specks.

    Never uniform, so it passes the gateway's ink check (a lone dark pixel does not: its
    3x3 blur is too faint). Pixel-fine noise is a minority: the gateway thickens it into
    a solid block, the same every time (and slowly)."""
    level = rng.uniform(0.25, 0.75)
    style = rng.random()
    if style < 0.2:
        sigma = rng.uniform(0.12, 0.35)
        return _to_uint8(level + rng.standard_normal((height, width), dtype=np.float32) * sigma)
    grain = max(2, round(min(height, width) * rng.uniform(0.05, 0.14)))
    coarse = (-(-height // grain), -(-width // grain))
    if style < 0.6:
        values = level + rng.standard_normal(coarse, dtype=np.float32) * rng.uniform(0.2, 0.5)
        smooth = rng.random() < 0.5  # blurred grains, or square ones
        resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
        grains = Image.fromarray(values, mode="F").resize((width, height), resample)
        return _to_uint8(np.asarray(grains))
    draw = rng.random(coarse)
    density = rng.uniform(0.03, 0.3)
    paper = rng.uniform(0.0, 0.2) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)
    values = np.full(coarse, paper, np.float32)
    values[draw < density / 2] = 0.0
    values[(draw >= density / 2) & (draw < density)] = 1.0
    return _to_uint8(np.repeat(np.repeat(values, grain, 0), grain, 1)[:height, :width])


def _photo_crop(
    rng: np.random.Generator, height: int, width: int, photos: tuple[Image.Image, ...]
) -> np.ndarray:
    """A random part of a photo or scan at a random scale, sometimes inverted, its
    contrast and brightness changed."""
    photo = photos[int(rng.integers(len(photos)))]
    # Never most of a photo: a whole head or a lens of a pair of glasses is a ring, a 0.
    side = min(photo.size) * rng.uniform(0.2, 0.6)
    crop_width = min(photo.width, side * width / max(height, width) * rng.uniform(0.9, 1.1))
    crop_height = min(photo.height, side * height / max(height, width) * rng.uniform(0.9, 1.1))
    left = rng.uniform(0, photo.width - crop_width)
    top = rng.uniform(0, photo.height - crop_height)
    crop = photo.resize(
        (width, height),
        Image.Resampling.BILINEAR,
        box=(left, top, left + crop_width, top + crop_height),
    )
    values = np.asarray(crop, dtype=np.float32) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.3:
        values = 1.0 - values
    return _to_uint8(values * rng.uniform(0.6, 1.0) + rng.uniform(0.0, 0.2))


# --- typed digits: the positives that keep font rendering from meaning "not a digit" ---


def mnist_like_typed_digits(
    count: int, seed: int, *, fonts: Sequence[Path] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`count` digits typed in the given fonts, drawn as the font negatives are (size,
    place, weight, slant, paper, grain), through the gateway's `mnist_like`: uint8
    [count, 28, 28] and their labels. Without them the model learns that whatever a
    font renders is no digit, and refuses typed digits. Empty without a usable font."""
    sources = _sources(font_files() if fonts is None else fonts)
    images = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.zeros(count, np.int64)
    if not sources.letter_fonts:
        return images[:0], labels[:0]
    entropy = seed % 2**64
    for index in range(count):
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([entropy, _TYPED_DIGIT_STREAM, index, attempt])
            digit = int(rng.integers(10))
            height, width = _canvas_size(rng)
            path, _glyphs = sources.letter_fonts[int(rng.integers(len(sources.letter_fonts)))]
            mask = _typed(rng, height, width, path, str(digit))
            try:
                frame = mnist_like(_on_paper(mask, rng).astype(np.float32) / PIXEL_MAX)
            except NoInk:
                continue
            images[index], labels[index] = np.rint(frame[..., 0] * PIXEL_MAX), digit
            break
        else:
            raise RuntimeError(f"typed digits: {MAX_ATTEMPTS} images in a row without ink")
    return images, labels


def _typed(rng: np.random.Generator, height: int, width: int, path: str, text: str) -> Image.Image:
    """`text` in the font at `path`, at a random size, place, weight (outline stroke)
    and slant: the canvas's coverage mask."""
    box = _content_box(rng, height, width)
    # Rendered near the size it is shown at: no large rendering shrunk (slow), and small
    # sizes keep their own hinting.
    wanted = box[3] * rng.uniform(0.9, 1.5)
    size = next((size for size in FONT_RENDER_SIZES if size >= wanted), FONT_RENDER_SIZES[-1])
    font = _font(path, size)
    stroke = 0 if rng.random() < 0.6 else int(rng.integers(1, max(2, size // 12)))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    glyph = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(glyph).text(
        (-left, -top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    return _placed(rng, height, width, glyph, box)


# --- coarse digits: the positives that keep blur and blocks from meaning "not a digit" ---

# Side of the coarse copy (the digit's longer side, in pixels) and of its enlargement.
COARSE_SIDE, COARSE_SHOWN_SIDE = (7, 14), (20, 80)
# Share of coarse copies kept to a few gray levels (a 4-bit scan), and that range.
FEW_LEVELS_SHARE, FEW_LEVELS = 0.5, (5, 33)


def mnist_like_coarse_digits(
    digits: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` of the given MNIST digits (uint8 [n, 28, 28], bright on dark) as a coarse
    source shows them: shrunk to a few pixels a side by area averaging, sometimes to a
    few gray levels, enlarged again (bilinear or blocky), on paper of either polarity,
    through the gateway's `mnist_like`. Negatives come blurred and grainy; without these
    the model learns that a soft or blocky digit (a thumbnail, an 8x8 scan) is none."""
    images = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    chosen = np.zeros(count, np.int64)
    entropy = seed % 2**64
    for index in range(count):
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([entropy, _COARSE_DIGIT_STREAM, index, attempt])
            row = int(rng.integers(len(digits)))
            try:
                frame = mnist_like(_coarse(rng, digits[row]).astype(np.float32) / PIXEL_MAX)
            except NoInk:
                continue
            images[index], chosen[index] = np.rint(frame[..., 0] * PIXEL_MAX), labels[row]
            break
        else:
            raise RuntimeError(f"coarse digits: {MAX_ATTEMPTS} images in a row without ink")
    return images, chosen


def _coarse(rng: np.random.Generator, digit_image: np.ndarray) -> np.ndarray:
    """One MNIST digit shrunk, maybe posterised, enlarged and put on paper: uint8 gray."""
    digit = Image.fromarray(digit_image)
    left, top, right, bottom = digit.getbbox() or (0, 0, IMAGE_SIZE, IMAGE_SIZE)
    digit = digit.crop((left - 1, top - 1, right + 1, bottom + 1))
    coarse = _with_longer_side(
        digit, int(rng.integers(*COARSE_SIDE, endpoint=True)), Image.Resampling.BOX
    )
    values = np.asarray(coarse, np.float32) / np.float32(PIXEL_MAX)
    if rng.random() < FEW_LEVELS_SHARE:
        levels = int(rng.integers(*FEW_LEVELS)) - 1
        values = np.rint(values * levels) / levels
    coarse = Image.fromarray(_to_uint8(values))
    shown = int(rng.integers(*COARSE_SHOWN_SIDE, endpoint=True))
    resampling = Image.Resampling.NEAREST if rng.random() < 0.3 else Image.Resampling.BILINEAR
    mask = _with_longer_side(coarse, shown, resampling)
    margin = int(rng.integers(0, max(mask.size) // 3 + 1))
    canvas = Image.new("L", (mask.width + 2 * margin, mask.height + 2 * margin), 0)
    canvas.paste(mask, (margin, margin))
    return _on_paper(canvas, rng)


def _with_longer_side(image: Image.Image, side: int, resampling) -> Image.Image:
    """The image resized, its aspect kept, so that its longer side is `side` pixels."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resampling)

"""Stage 1: upload bytes -> grayscale float32 [H, W] in [0, 1], refusing what we will not decode.

The header is read once (`open_image`): format whitelist and pixel limit are checked there,
before any pixel data is decompressed, so a decompression bomb costs nothing. `decode` then
loads the first frame, shrinks huge images, applies EXIF orientation, composites alpha on
white and converts to luminance. Pillow decodes every image.
"""

import contextlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contract import PIXEL_MAX
from serving.errors import BadImage, PayloadTooLarge, UnsupportedMediaType

# Our own pixel limit (checked from the header in open_image) applies; Pillow's global
# one would only warn. Filtered once here, not in a catch_warnings block per call.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"})
# Formats whose compression leaves noise around strokes (WebP can be lossless; most
# WebP uploads are not).
LOSSY_FORMATS = frozenset({"JPEG", "WEBP"})
# Larger images are box-averaged down to this longest side first (JPEGs decoded small in
# the DCT): a digit 2% of the image's width still spans the 20-pixel box, and a
# 40-megapixel photo costs little.
MAX_WORKING_SIDE = 1000
# JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps their longer side
# at least this long: a 1600x1200 photo at 800x600, not at full size and then shrunk.
MIN_DRAFT_SIDE = 800


@dataclass(frozen=True)
class OpenedImage:
    """An upload whose header has been read and accepted; no pixels decoded yet."""

    image: Image.Image
    format: str
    mode: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def lossy(self) -> bool:
        return self.format in LOSSY_FORMATS


def open_image(data: bytes, *, max_pixels: int) -> OpenedImage:
    """Read the header: BadImage, UnsupportedMediaType or PayloadTooLarge before any pixel."""
    if not data:
        raise BadImage("the upload is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(f"image has too many pixels (limit {max_pixels:,})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImage("the upload is not a recognised image") from error
    width, height = image.size
    opened = OpenedImage(image, image.format or "?", image.mode, width, height)
    if opened.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(
            f"image format {opened.format} is not supported; "
            f"send one of {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    if opened.pixels > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {opened.pixels:,} pixels (limit {max_pixels:,})"
        )
    if width < 1 or height < 1:
        raise BadImage("image has no pixels")
    return opened


def decode(opened: OpenedImage) -> np.ndarray:
    """The first frame as float32 luminance [H, W] in [0, 1]; BadImage if truncated or corrupt."""
    image = opened.image
    try:
        image.seek(0)  # the first frame of an animation or multi-page TIFF
        if opened.format == "JPEG":
            # libjpeg decodes the luma alone (no chroma upsampling, no colour conversion)
            # and, for photos, at 1/2, 1/4 or 1/8 scale in the DCT: the entropy decoding
            # is then most of the cost (docs/benchmarks.md).
            scale = MIN_DRAFT_SIDE / max(opened.width, opened.height)
            size = (math.ceil(opened.width * scale), math.ceil(opened.height * scale))
            image.draft("L", size if scale < 1 else None)
        image.load()
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge("image has too many pixels") from error
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise BadImage(f"the {opened.format} image is truncated or corrupt") from error
    return _to_grayscale(image)


def _shrink(image: Image.Image) -> Image.Image:
    """Box-average a huge image down to the working resolution (a digit needs no more)."""
    longest = max(image.size)
    if longest <= MAX_WORKING_SIDE:
        return image
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(math.ceil(longest / MAX_WORKING_SIDE))


def _to_grayscale(image: Image.Image) -> np.ndarray:
    """EXIF orientation applied, alpha composited on white, luminance in [0, 1]."""
    image = _shrink(image)
    if not _png_without_orientation(image):
        # A malformed EXIF block must not reject an otherwise good image.
        with contextlib.suppress(Exception):
            image = ImageOps.exif_transpose(image)

    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit scans rarely use the full range: the brightest pixel is white.
        pixels = np.asarray(image, dtype=np.float32)
        return pixels / max(float(pixels.max()), 1.0)
    if mode == "F":
        pixels = np.asarray(image, dtype=np.float32)
        low, high = float(pixels.min()), float(pixels.max())
        return (pixels - low) / max(high - low, 1e-6)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        if image.mode != "RGBA":  # converting RGBA to itself would only copy it
            image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    if image.mode != "L":
        # CMYK, YCbCr, LAB, HSV, RGB, 1: via RGB to ITU-R 601-2 luma.
        if image.mode not in ("RGB", "1"):
            image = image.convert("RGB")
        image = image.convert("L")
    # The bytes as they are: np.asarray on a fresh PIL image goes through its array
    # interface, a fixed cost that dominates a 28x28 image; the same values.
    pixels = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.height, image.width)
    return pixels.astype(np.float32) / PIXEL_MAX


def _png_without_orientation(image: Image.Image) -> bool:
    """A PNG with neither EXIF nor XMP carries no orientation: exif_transpose would only
    parse an empty EXIF block and copy the image."""
    return image.format == "PNG" and not any(
        key in image.info for key in ("exif", "xmp", "XML:com.adobe.xmp")
    )

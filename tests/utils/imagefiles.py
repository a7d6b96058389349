"""Image files for gateway tests, built from MNIST arrays with Pillow (no files on disk)."""

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png(digit: np.ndarray) -> bytes:
    """A uint8 28x28 MNIST array as the PNG a user would upload."""
    return encode(Image.fromarray(digit))


def dark_on_white(digit: np.ndarray) -> np.ndarray:
    return 255 - digit


def small_off_centre(digit: np.ndarray, canvas: int = 200, size: int = 56) -> np.ndarray:
    """The digit drawn `size` pixels tall near the top-left of a white canvas, dark ink."""
    scaled = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    page = Image.new("L", (canvas, canvas), 255)
    page.paste(scaled, (canvas // 8, canvas // 5))
    return np.asarray(page)


def transparent_canvas(digit: np.ndarray) -> Image.Image:
    """Black strokes on a fully transparent background, as a browser canvas exports them."""
    rgba = np.zeros((*digit.shape, 4), dtype=np.uint8)
    rgba[..., 3] = digit  # ink opacity; colour stays black
    return Image.fromarray(rgba, mode="RGBA")


def exif_rotated_jpeg(upright: np.ndarray, quality: int = 95) -> bytes:
    """A JPEG whose pixels are stored rotated, with the EXIF tag that says how to undo it.

    Orientation 6 means "rotate 90 degrees clockwise to display": a camera held upright
    stores the pixels turned 90 degrees anticlockwise.
    """
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=quality, exif=exif.tobytes())


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that claims huge dimensions: the pixel data is a few bytes of zeros."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    data = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )

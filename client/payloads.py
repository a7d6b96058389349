"""Request bodies built from the committed MNIST sample: for the load test and the benchmarks.

Everything is generated locally and deterministically (seeded), no network: 28x28 PNGs as
MNIST stores them, written numbers (digits side by side), photos of a digit on paper
(anywhere in the frame, lit unevenly, blurred, grainy, JPEG), pre-encoded multipart and
base64 JSON bodies, and malformed uploads the gateway must refuse.
"""

import base64
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "data" / "mnist-sample.npz"
# Locust request names of malformed uploads start with this: they must get a 4xx.
BAD_UPLOAD_PREFIX = "bad upload: "


@dataclass(frozen=True)
class Body:
    """A ready-to-send request body."""

    name: str
    data: bytes
    content_type: str
    images: int  # how many predictions a 200 answer must hold


def load_digits(path: Path = SAMPLE_PATH, count: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits (uint8 [count, 28, 28], bright ink on dark) and their labels."""
    with np.load(path) as data:
        return data["x_test"][:count], data["y_test"][:count]


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_jpeg(
    digit: np.ndarray,
    rng: np.random.Generator,
    size: tuple[int, int] = (1280, 960),
    *,
    fraction: tuple[float, float] = (0.1, 0.5),
    light_ink: bool = False,
) -> bytes:
    """A digit written on paper (or chalk on a board) and photographed by a phone.

    The digit's ink at a share of the frame's height drawn from `fraction`, at a random
    place, rotated by up to 8 degrees; light falling off across the frame and towards its
    corners; a colour cast; optical blur and sensor grain that scale with the frame; JPEG
    quality 70-95. Ink reflects the same light as the paper, so a shaded corner darkens both."""
    width, height = size
    ink_height = rng.uniform(*fraction) * height
    side = max(8, round(ink_height * 28 / 20))  # MNIST's digits fill 20 of 28 pixels
    glyph = Image.fromarray(digit).rotate(float(rng.uniform(-8, 8)), Image.Resampling.BICUBIC)
    glyph = glyph.resize((side, side), Image.Resampling.BICUBIC)
    inked = np.zeros((height, width), np.float32)
    top = int(rng.integers(0, max(1, height - side)))
    left = int(rng.integers(0, max(1, width - side)))
    inked[top : top + side, left : left + side] = (
        np.asarray(glyph, np.float32)[: height - top, : width - left] / 255
    )
    # Light: a gradient in a random direction and a vignette, made small and scaled up.
    ys, xs = np.mgrid[0:48, 0:64].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xs / 63 - 0.5) + np.sin(angle) * (ys / 47 - 0.5)) + 0.5
    corner = ((xs / 63 - 0.5) ** 2 + (ys / 47 - 0.5) ** 2) * 2
    light = 1 - rng.uniform(0.1, 0.35) * ramp - rng.uniform(0.0, 0.2) * corner
    light = Image.fromarray(light.astype(np.float32), "F")
    light = np.asarray(light.resize((width, height), Image.Resampling.BILINEAR))
    if light_ink:  # chalk on a dark board
        surface, mark = rng.uniform(25, 70), rng.uniform(170, 235)
    else:  # a pen on paper
        surface, mark = rng.uniform(190, 240), rng.uniform(20, 90)
    gray = (light * (surface + (mark - surface) * inked)).clip(0, 255).astype(np.uint8)
    blur = ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * height / 480)
    gray = np.asarray(Image.fromarray(gray).filter(blur), np.float32)
    cast = (
        rng.uniform([0.9, 0.9, 0.75], [1.0, 1.0, 1.0])
        if rng.random() < 0.5
        else (rng.uniform([0.8, 0.9, 0.9], [0.95, 1.0, 1.0]))
    )
    grain = rng.normal(0, rng.uniform(2, 7), (height, width)).astype(np.float32)
    rgb = np.stack([(gray + grain) * c for c in cast], axis=-1)
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue()


@dataclass(frozen=True)
class Number:
    """A written number: the image (uint8, dark ink on white) and each digit's box
    (x, y, width, height) where its ink was put, left to right."""

    image: np.ndarray
    boxes: list[tuple[int, int, int, int]]


def compose_number(
    digits: list[np.ndarray],
    *,
    height: int = 84,
    gaps: list[int] | None = None,
    margin: int = 18,
    baseline_jitter: int = 0,
    rng: np.random.Generator | None = None,
) -> Number:
    """MNIST digits (bright on dark, 28x28) written side by side as a line of dark ink.

    Each digit is scaled to `height` pixels for its 28-pixel frame, cropped to its ink and
    put `gaps[i]` pixels after the previous one (negative: overlapping, so strokes touch);
    `baseline_jitter` moves each one up or down by up to that many pixels (a wavy line).
    Where digits overlap, the darker ink wins, as with a pen."""
    gaps = gaps if gaps is not None else [height // 6] * (len(digits) - 1)
    rng = rng or np.random.default_rng(0)
    crops = []
    for digit in digits:
        scaled = np.asarray(
            Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC), np.uint8
        )
        rows = np.flatnonzero(scaled.max(axis=1) > 25)
        columns = np.flatnonzero(scaled.max(axis=0) > 25)
        crops.append(scaled[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1])
    shifts = [int(rng.integers(-baseline_jitter, baseline_jitter + 1)) for _ in crops]
    width = 2 * margin + sum(crop.shape[1] for crop in crops) + sum(gaps)
    tall = 2 * margin + height + 2 * baseline_jitter
    ink = np.zeros((tall, width), np.uint8)
    boxes = []
    left = margin
    for index, (crop, shift) in enumerate(zip(crops, shifts, strict=True)):
        top = margin + baseline_jitter + shift + (height - crop.shape[0]) // 2
        window = ink[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.maximum(window, crop, out=window)
        boxes.append((left, top, crop.shape[1], crop.shape[0]))
        left += crop.shape[1] + (gaps[index] if index < len(gaps) else 0)
    return Number(255 - ink, boxes)


def multipart_body(files: list[tuple[str, bytes, str]], boundary: str | None = None) -> Body:
    """multipart/form-data with one `file` part per (filename, data, content type)."""
    boundary = boundary or f"mnist-{uuid.uuid4().hex}"
    chunks = []
    for filename, data, content_type in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return Body(
        name=f"{len(files)} file(s)",
        data=b"".join(chunks),
        content_type=f"multipart/form-data; boundary={boundary}",
        images=len(files),
    )


def base64_json_body(images: list[bytes]) -> Body:
    payload = {"images": [base64.b64encode(data).decode("ascii") for data in images]}
    return Body(
        name=f"{len(images)} base64 image(s)",
        data=json.dumps(payload).encode(),
        content_type="application/json",
        images=len(images),
    )


def bad_uploads(sample_png: bytes, sample_jpeg: bytes) -> list[Body]:
    """Requests a correct gateway answers with a 4xx; `images` is 0 for all of them."""

    def multipart(name: str, filename: str, data: bytes, content_type: str) -> Body:
        body = multipart_body([(filename, data, content_type)])
        return Body(name, body.data, body.content_type, 0)

    return [
        multipart("truncated png", "cut.png", sample_png[: len(sample_png) // 2], "image/png"),
        multipart("truncated jpeg", "cut.jpg", sample_jpeg[: len(sample_jpeg) // 3], "image/jpeg"),
        multipart(
            "not an image",
            "notes.png",
            b"these are not the pixels you are looking for",
            "image/png",
        ),
        multipart("empty file", "empty.png", b"", "image/png"),
        Body("no files", b"--x--\r\n", "multipart/form-data; boundary=x", 0),
        Body("bad base64", b'{"images": ["%%% not base64 %%%"]}', "application/json", 0),
        Body("empty json", b'{"images": []}', "application/json", 0),
        Body("malformed json", b'{"images": [', "application/json", 0),
        Body("plain text body", b"7", "text/plain", 0),
    ]

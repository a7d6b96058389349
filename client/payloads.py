"""Request bodies built from the committed MNIST sample: for the load test and the benchmarks.

Everything is generated locally and deterministically (seeded), no network: 28x28 PNGs as
MNIST stores them, photo-like JPEGs (dark ink on light, shaded, noisy paper, camera-sized),
pre-encoded multipart and base64 JSON bodies, and malformed uploads the gateway must refuse.
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
    digit: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = (1280, 960)
) -> bytes:
    """A phone-style photo of the digit: dark ink on light, unevenly lit, noisy paper."""
    width, height = size
    # Paper: light, with a lighting gradient across the frame and sensor noise.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height) * rng.uniform(20, 45)
    paper = 215.0 + ramp - ramp.mean() + rng.normal(0, 6, size=(height, width))
    # Ink: the digit scaled to about half the frame height, slightly blurred, off-centre.
    side = int(height * rng.uniform(0.4, 0.6))
    ink = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    ink = ink.filter(ImageFilter.GaussianBlur(radius=side / 150))
    alpha = np.asarray(ink, dtype=np.float32) / 255.0
    left = int((width - side) * rng.uniform(0.3, 0.7))
    top = int((height - side) * rng.uniform(0.3, 0.7))
    region = paper[top : top + side, left : left + side]
    ink_level = rng.uniform(25, 60)
    region[:] = region * (1 - alpha) + ink_level * alpha
    gray = np.clip(paper, 0, 255).astype(np.uint8)
    # Phones take colour pictures: a faint warm cast on all three channels.
    rgb = np.stack([gray, (gray * 0.98).astype(np.uint8), (gray * 0.94).astype(np.uint8)], -1)
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


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

"""How well POST /v1/read reads whole numbers: exact matches of `text`, digits read right,
and where a reading goes wrong, on numbers composed from the MNIST **test** split and on
typed numbers.

    python bench/reading.py --export-base models [--data mnist.npz] [--count 200]

Each number goes through a real gateway (`python -m serving` on 127.0.0.1, embedded
backend, one worker) as an upload, 16 numbers a request. A reading that went wrong is put
in one class, the first that applies: `merge` (fewer segments than digits: two read as
one), `split` (more: one read as two, or a mark), `classification` (as many segments as
digits, a digit read wrong or refused as no digit).

Handwritten conditions (numbers of 2-6 digits drawn from the test digits with their own
seed): gaps from touching (-4 px at 84 px tall) to wide, digit height 40-160 px, dark on
white and light on dark, JPEG q70-95, photo-like paper (shading, grain, blur); typed: the
fonts installed (DejaVu, Liberation, FreeFont...) at 24-120 px. Prints one table.
"""

import argparse
import io
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from bench.gateway import ServerSpec, running  # noqa: E402
from bench.preprocessing import fonts  # noqa: E402
from client.payloads import compose_number  # noqa: E402
from training.splits import VALIDATION_FRACTION  # noqa: E402

REQUEST_IMAGES = 16


def _encode(gray: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _number(x_test, y_test, rng, *, gap_range=(6, 30), height=84, jitter=0):
    length = int(rng.integers(2, 7))
    indices = rng.integers(0, len(x_test), length)
    gaps = [int(g) for g in rng.integers(*gap_range, length - 1)]
    number = compose_number(
        [x_test[i] for i in indices], height=height, gaps=gaps, baseline_jitter=jitter, rng=rng
    )
    return number.image, "".join(str(int(y_test[i])) for i in indices)


def _on_photo_paper(gray: np.ndarray, rng) -> np.ndarray:
    height, width = gray.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = (
        1
        - rng.uniform(0.1, 0.3) * (np.cos(angle) * xs / width + np.sin(angle) * ys / height + 1) / 2
    )
    paper = rng.uniform(200, 240)
    ink = 1 - gray.astype(np.float32) / 255
    image = light * (paper + (rng.uniform(20, 80) - paper) * ink)
    image += rng.normal(0, 4, image.shape)
    image = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2))))


def handwritten_conditions(x_test, y_test, count: int) -> dict[str, list[tuple[bytes, str]]]:
    def made(name, build):
        rng = np.random.default_rng(sum(map(ord, name)))
        return [build(rng) for _ in range(count)]

    def png(gap_range=(6, 30), height=84, jitter=0, light=False):
        def build(rng):
            image, text = _number(
                x_test, y_test, rng, gap_range=gap_range, height=height, jitter=jitter
            )
            return _encode(255 - image if light else image), text

        return build

    def jpeg(rng):
        image, text = _number(x_test, y_test, rng)
        return _encode(image, "JPEG", quality=int(rng.integers(70, 96))), text

    def photo(rng):
        image, text = _number(x_test, y_test, rng, height=int(rng.integers(60, 160)))
        paper = _on_photo_paper(np.pad(image, 60, constant_values=255), rng)
        return _encode(paper, "JPEG", quality=int(rng.integers(70, 96))), text

    return {
        "handwritten, dark on white, gaps 6-30 px (84 px tall)": made("base", png()),
        "handwritten, touching or nearly (gaps -4 to 4 px)": made("touch", png((-4, 5))),
        "handwritten, wide gaps (30-120 px)": made("wide", png((30, 121))),
        "handwritten, small (40 px tall)": made("small", png(height=40)),
        "handwritten, large (160 px tall)": made("large", png(height=160)),
        "handwritten, wavy baseline (±15 px)": made("wavy", png(jitter=15)),
        "handwritten, light on dark": made("light", png(light=True)),
        "handwritten, JPEG q70-95": made("jpeg", jpeg),
        "handwritten, photo-like paper (shading, grain, blur, JPEG)": made("photo", photo),
    }


def typed_numbers(count: int) -> list[tuple[bytes, str]]:
    rng = np.random.default_rng(7)
    paths = [p for p in fonts() if _draws_digits(p)]
    samples = []
    for index in range(count):
        font_path = paths[index % len(paths)]
        size = int(rng.integers(24, 121))
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 7))))
        font = ImageFont.truetype(str(font_path), size)
        left, top, right, bottom = font.getbbox(text)
        canvas = Image.new("L", (right - left + size, bottom - top + size), 255)
        ImageDraw.Draw(canvas).text((size // 2 - left, size // 2 - top), text, font=font, fill=0)
        samples.append((_encode(np.asarray(canvas)), text))
    return samples


def _draws_digits(path: Path) -> bool:
    font = ImageFont.truetype(str(path), 40)
    boxes = {font.getbbox(str(d)) for d in range(10)}
    return len(boxes) > 1 and all(right - left > 2 for left, _, right, _ in boxes)


def read_all(client: httpx.Client, url: str, samples: list[tuple[bytes, str]]) -> list[dict]:
    readings = []
    for start in range(0, len(samples), REQUEST_IMAGES):
        chunk = samples[start : start + REQUEST_IMAGES]
        files = [("file", (f"{i}", data)) for i, (data, _) in enumerate(chunk)]
        response = client.post(f"{url}/v1/read", files=files)
        if response.status_code == 200:
            readings += response.json()["readings"]
        else:  # one image refused: each on its own, so the others still count
            for data, _ in chunk:
                single = client.post(f"{url}/v1/read", files=[("file", ("x", data))])
                readings.append(single.json()["readings"][0] if single.status_code == 200 else None)
    return readings


def score(samples: list[tuple[bytes, str]], readings: list[dict]) -> dict[str, float]:
    exact = digits = total = merge = split = classification = 0
    for (_, truth), reading in zip(samples, readings, strict=True):
        total += len(truth)
        if reading is None:
            classification += 1
            continue
        exact += reading["text"] == truth
        segments = reading["digits"]
        if len(segments) == len(truth):
            digits += sum(
                s["is_digit"] and s["digit"] == int(t) for s, t in zip(segments, truth, strict=True)
            )
        if reading["text"] == truth:
            continue
        if len(segments) < len(truth):
            merge += 1
        elif len(segments) > len(truth):
            split += 1
        else:
            classification += 1
    n = len(samples)
    return {
        "n": n,
        "exact": 100 * exact / n,
        "digits": 100 * digits / total,
        "merge": 100 * merge / n,
        "split": 100 * split / n,
        "classification": 100 * classification / n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-base", type=Path, default=Path("models"))
    default_data = Path(os.environ.get("MNIST_NPZ", "data/mnist-sample.npz"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--count", type=int, default=200, help="numbers per condition")
    parser.add_argument(
        "--digits",
        choices=("test", "validation"),
        default="test",
        help="compose from the test split (the figures) or from the training job's "
        "validation split (for choices: the model never trained on it either)",
    )
    args = parser.parse_args()
    with np.load(args.data) as data:
        if args.digits == "test":
            x_test, y_test = data["x_test"], data["y_test"]
        else:  # training.splits.make_splits' validation digits, for the default seed 0
            order = np.random.default_rng(0).permutation(len(data["x_train"]))
            held_out = order[: int(len(order) * VALIDATION_FRACTION)]
            x_test, y_test = data["x_train"][held_out], data["y_train"][held_out]
    conditions = handwritten_conditions(x_test, y_test, args.count)
    conditions["typed numbers (installed fonts, 24-120 px)"] = typed_numbers(args.count)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-reading-"))
    spec = ServerSpec("reading", "gateway", 1, ())
    started = time.monotonic()
    with (
        running(spec, args.export_base, Path(os.devnull), log_dir) as url,
        httpx.Client(timeout=120) as client,
    ):
        version = client.get(f"{url}/v1/models").json()["version"]
        print(
            f"model {args.export_base}/mnist/{version}; {args.data}, {args.digits} digits; "
            f"{args.count} a condition\n"
        )
        columns = "exact match % | digits right % | merge % | split % | classification %"
        print(f"| condition | n | {columns} |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, samples in itertools.chain(conditions.items()):
            row = score(samples, read_all(client, url, samples))
            print(
                f"| {name} | {row['n']} | {row['exact']:.1f} | {row['digits']:.1f} | "
                f"{row['merge']:.1f} | {row['split']:.1f} | {row['classification']:.1f} |",
                flush=True,
            )
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

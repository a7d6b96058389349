"""How much the gateway's preprocessing matters: accuracy of one model on the same digits
presented the way real uploads arrive, behind a naive "grayscale and resize to 28x28"
step and behind serving.preprocessing (with ablations).

    python bench/preprocessing.py --export-base models [--data mnist.npz] [--count 2000]

Every image goes through the real path: encoded to bytes, decoded, preprocessed, then
classified through the SavedModel's serving signature. Prints a table of accuracies (%).

    python bench/preprocessing.py --compare-with /tmp/base [--count 300]

needs no model: puts the same uploads through the preprocessing of another checkout (a
tree at an earlier commit) and through this one, and prints how far the outputs differ.
"""

import argparse
import contextlib
import io
import itertools
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client.payloads import photo_jpeg
from contract import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from serving import preprocessing
from serving.preprocessing import ink, placement

FONT_DIR = Path("/usr/share/fonts/truetype")
MAX_PIXELS = 40_000_000


# --- how the digits are presented -------------------------------------------------------


def encode(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def mnist_png(digit: np.ndarray, rng) -> bytes:
    return encode(Image.fromarray(digit))


def dark_on_white(digit: np.ndarray, rng) -> bytes:
    return encode(Image.fromarray(255 - digit))


def tightly_cropped(digit: np.ndarray, rng) -> bytes:
    """Dark on white, cut to the digit's bounding box (what a user's crop tool gives)."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return encode(Image.fromarray(255 - crop))


def small_off_centre(digit: np.ndarray, rng) -> bytes:
    size = int(rng.integers(40, 90))
    page = Image.new("L", (200, 200), 255)
    scaled = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)
    page.paste(scaled, tuple(int(v) for v in rng.integers(0, 200 - size, 2)))
    return encode(page)


def transparent_canvas(digit: np.ndarray, rng) -> bytes:
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    big = Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC)
    rgba[..., 3] = np.asarray(big)
    return encode(Image.fromarray(rgba, "RGBA"))


def phone_photo(digit: np.ndarray, rng) -> bytes:
    """Dark ink on off-white paper with a shading gradient, sensor noise, JPEG quality 70."""
    size = 224
    ink = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC))
    ink = ink.astype(np.float32) / 255
    ys, xs = np.mgrid[0:size, 0:size] / size
    paper = 225 - 35 * (0.6 * xs + 0.4 * ys) * rng.uniform(0.5, 1.0)
    pixels = paper * (1 - 0.8 * ink) + rng.normal(0, 4, (size, size))
    rgb = np.stack([pixels, pixels * 0.98, pixels * 0.93], axis=-1).clip(0, 255).astype(np.uint8)
    return encode(Image.fromarray(rgb), "JPEG", quality=70)


def jpeg_q70(digit: np.ndarray, rng) -> bytes:
    return encode(Image.fromarray(255 - digit).resize((112, 112)), "JPEG", quality=70)


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a one-pixel-wide skeleton of a binary image."""
    skeleton = np.pad(mask.astype(bool), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = skeleton
            n = [
                np.roll(np.roll(p, dy, 0), dx, 1)
                for dy, dx in ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))
            ]
            # neighbours P2..P9 clockwise from north
            p2, p3, p4, p5, p6, p7, p8, p9 = n
            count = sum(x.astype(int) for x in n)
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            transitions = sum((~a & b).astype(int) for a, b in itertools.pairwise(ring))
            if step == 0:
                extra = ~(p2 & p4 & p6) & ~(p4 & p6 & p8)
            else:
                extra = ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = p & (count >= 2) & (count <= 6) & (transitions == 1) & extra
            if remove.any():
                skeleton = p & ~remove
                changed = True
    return skeleton[1:-1, 1:-1]


def _centre_line(digit: np.ndarray, size: int, pen: int) -> bytes:
    """The digit's centre line drawn `pen` pixels wide on a white page `size` pixels wide."""
    grid = 70
    big = np.asarray(Image.fromarray(digit).resize((grid, grid), Image.Resampling.BICUBIC)) > 100
    skeleton = _thin(big)
    page = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(page)
    scale = size / grid
    for y, x in zip(*np.nonzero(skeleton), strict=True):
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
            ny, nx = y + dy, x + dx
            if 0 <= ny < grid and 0 <= nx < grid and skeleton[ny, nx]:
                ends = [
                    (x + 0.5) * scale,
                    (y + 0.5) * scale,
                    (nx + 0.5) * scale,
                    (ny + 0.5) * scale,
                ]
                draw.line(ends, fill=0, width=pen)
    return encode(page)


def thin_pen(digit: np.ndarray, rng) -> bytes:
    return _centre_line(digit, 280, 3)


def hairline(digit: np.ndarray, rng) -> bytes:
    return _centre_line(digit, 1120, 1)


MNIST_CONDITIONS: dict[str, Callable] = {
    "MNIST as PNG": mnist_png,
    "dark ink on white": dark_on_white,
    "tightly cropped, dark on white": tightly_cropped,
    "small, off-centre on 200x200": small_off_centre,
    "canvas, transparent background": transparent_canvas,
    "JPEG q70, dark on white, 112px": jpeg_q70,
    "phone photo (shading, noise, JPEG)": phone_photo,
    "thin pen (3 px centre line, 280 px)": thin_pen,
    "hairline (1 px centre line, 1120 px)": hairline,
}


# --- photos of a digit on paper ---------------------------------------------------------

PHOTO_SIZES = ((640, 480), (1600, 1200), (4000, 3000))
# The digit's ink height as a share of the frame's height.
PHOTO_FRACTIONS = {"10-25%": (0.10, 0.25), "25-50%": (0.25, 0.50)}


def photo_conditions(x_test, y_test, count: int, only: str = "") -> Iterator[tuple[str, list]]:
    """Each frame size x digit fraction x polarity: `count` photos of the first digits,
    made one condition at a time (a 4000x3000 photo takes a while to make)."""
    for (width, height), (label, fraction), light_ink in itertools.product(
        PHOTO_SIZES, PHOTO_FRACTIONS.items(), (False, True)
    ):
        name = f"photo {width}x{height}, digit {label}, {'light' if light_ink else 'dark'} ink"
        if only not in name:
            continue
        rng = np.random.default_rng([width, round(fraction[0] * 100), int(light_ink)])
        yield (
            name,
            [
                (
                    photo_jpeg(x, rng, (width, height), fraction=fraction, light_ink=light_ink),
                    int(y),
                )
                for x, y in zip(x_test[:count], y_test[:count], strict=True)
            ],
        )


def fonts() -> list[Path]:
    return sorted(p for p in FONT_DIR.rglob("*.ttf") if "Math" not in p.name)


def typed_digits(rng, font_paths: list[Path] | None = None) -> Iterator[tuple[bytes, int]]:
    """Each digit in each font (default: every installed one) at a few sizes, dark on
    white, a little off-centre."""
    for font_path in fonts() if font_paths is None else font_paths:
        for size in (28, 64, 160):
            font = ImageFont.truetype(str(font_path), size)
            for digit in range(10):
                canvas = Image.new("L", (size * 2, size * 2), 255)
                offset = tuple(int(v) for v in rng.integers(size // 4, size // 2, 2))
                ImageDraw.Draw(canvas).text(offset, str(digit), font=font, fill=0)
                yield encode(canvas), digit


# --- the preprocessing pipelines compared -----------------------------------------------


def naive(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    return (np.asarray(image, dtype=np.float32) / 255.0)[..., None]


def ours(data: bytes) -> np.ndarray:
    return preprocessing.preprocess(data, max_pixels=MAX_PIXELS)


@contextlib.contextmanager
def patched(**constants) -> Iterator[None]:
    """The stage constants named set to other values (an ablation) for the duration."""
    modules = {name: ink if hasattr(ink, name) else placement for name in constants}
    old = {name: getattr(modules[name], name) for name in constants}
    for name, value in constants.items():
        setattr(modules[name], name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(modules[name], name, value)


PIPELINES: dict[str, tuple[Callable, dict]] = {
    "naive resize": (naive, {}),
    "ours": (ours, {}),
    "ours, no thickening": (ours, {"MIN_STROKE_WIDTH_IN_BOX": 0.0}),
    "ours, no haze floor": (ours, {"HAZE_FLOOR": 0.0}),
    "ours, no shading map": (ours, {"SHADING_MAX": 0.0}),
}


# --- running it -------------------------------------------------------------------------


def load_signature(export_base: Path):
    import tensorflow as tf

    model_dir = export_base / "mnist"
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    signature = tf.saved_model.load(str(model_dir / str(version))).signatures[SIGNATURE_NAME]

    def classify(images: np.ndarray) -> np.ndarray:
        digits = []
        for start in range(0, len(images), 512):
            batch = tf.constant(images[start : start + 512])
            digits.append(signature(**{INPUT_KEY: batch})[OUTPUT_KEY].numpy().argmax(axis=1))
        return np.concatenate(digits)

    return classify, model_dir / str(version)


def accuracy(classify, pipeline, samples: list[tuple[bytes, int]]) -> tuple[float, float]:
    """(accuracy %, ms per image for the preprocessing alone)."""
    start = time.perf_counter()
    arrays, labels = [], []
    for data, label in samples:
        try:
            arrays.append(pipeline(data))
        except Exception:  # a pipeline that cannot read an image gets it wrong
            arrays.append(np.zeros((28, 28, 1), np.float32))
        labels.append(label)
    elapsed_ms = (time.perf_counter() - start) * 1000 / len(samples)
    predicted = classify(np.stack(arrays).astype(np.float32))
    return 100.0 * float(np.mean(predicted == np.array(labels))), elapsed_ms


def make_conditions(x_test, y_test, only: str = "") -> dict[str, list[tuple[bytes, int]]]:
    rng = np.random.default_rng(0)
    conditions = {
        name: [(make(image, rng), int(label)) for image, label in zip(x_test, y_test, strict=True)]
        for name, make in MNIST_CONDITIONS.items()
    }
    typed = list(typed_digits(rng))
    if typed:
        conditions[f"typed digits ({len(fonts())} fonts x 3 sizes)"] = typed
    return {name: samples for name, samples in conditions.items() if only in name}


# --- agreement with another checkout's preprocessing ------------------------------------

# Run inside the other checkout: preprocess every upload, keep the array or the error's name.
OUTPUTS_OF = textwrap.dedent(
    """
    import pickle, sys
    from serving.preprocessing import preprocess
    def outcome(data):
        try:
            return preprocess(data, max_pixels=int(sys.argv[3]))
        except Exception as error:
            return type(error).__name__
    with open(sys.argv[1], "rb") as file:
        uploads = pickle.load(file)
    with open(sys.argv[2], "wb") as file:
        pickle.dump([outcome(data) for data in uploads], file)
    """
)
# Outputs further apart than this (in any pixel, of 1.0 full scale) count as different.
TOLERANCE = 1e-5


def outcomes_of(checkout: Path, uploads: list[bytes]) -> list:
    with tempfile.TemporaryDirectory() as scratch:
        sent, received = Path(scratch) / "uploads.pkl", Path(scratch) / "outcomes.pkl"
        sent.write_bytes(pickle.dumps(uploads))
        environment = {
            **os.environ,
            "PYTHONPATH": str(checkout),
            "PYTHONDONTWRITEBYTECODE": "1",  # leave the other checkout as it is
            "NUMBA_CACHE_DIR": str(Path(scratch) / "numba"),
        }
        subprocess.run(
            [sys.executable, "-c", OUTPUTS_OF, str(sent), str(received), str(MAX_PIXELS)],
            cwd=checkout,
            env=environment,
            check=True,
        )
        return pickle.loads(received.read_bytes())


def compare(checkout: Path, conditions: dict[str, list[tuple[bytes, int]]]) -> None:
    """Per condition: how far this tree's outputs are from the other checkout's, and how
    many uploads had another outcome (an error on one side only, or another error)."""
    uploads = [data for samples in conditions.values() for data, _ in samples]
    theirs = iter(outcomes_of(checkout, uploads))
    print(f"this tree against {checkout}; differing: some pixel differs by > {TOLERANCE:g}\n")
    print("| condition | n | max abs diff | mean abs diff | share differing | other outcome |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    every, every_other = [], 0
    for condition, samples in conditions.items():
        differences, other_outcome = [], 0
        for data, _ in samples:
            before = next(theirs)
            try:
                after = ours(data)
            except Exception as error:
                after = type(error).__name__
            if isinstance(before, str) or isinstance(after, str):
                other_outcome += not (isinstance(before, str) and before == after)
            else:
                differences.append(np.abs(after - before).ravel())
        print(_row(condition, len(samples), differences, other_outcome))
        every += differences
        every_other += other_outcome
    print(_row("all", len(uploads), every, every_other))


def _row(name: str, n: int, differences: list[np.ndarray], other_outcome: int) -> str:
    if not differences:
        return f"| {name} | {n} | | | | {other_outcome} |"
    maxima = np.array([d.max() for d in differences])
    mean = float(np.concatenate(differences).mean())
    share = 100.0 * float(np.mean(maxima > TOLERANCE))
    return f"| {name} | {n} | {maxima.max():.2e} | {mean:.2e} | {share:.2f}% | {other_outcome} |"


def print_photo_table(classify, x_test, y_test, count: int, only: str) -> None:
    """Accuracy through the full pipeline and its CPU time per photo, beside a 28x28 PNG."""
    print("| condition | n | accuracy % | CPU ms/image (median) | x the 28x28 PNG |")
    print("| --- | ---: | ---: | ---: | ---: |")
    png = [
        (mnist_png(x, None), int(y)) for x, y in zip(x_test[:count], y_test[:count], strict=True)
    ]
    reference = None
    for name, samples in itertools.chain(
        [("MNIST as PNG (28x28)", png)], photo_conditions(x_test, y_test, count, only)
    ):
        arrays, seconds = [], []
        for data, _ in samples:
            start = time.process_time()
            try:
                arrays.append(ours(data))
            except Exception:  # unreadable counts as wrong
                arrays.append(np.zeros((28, 28, 1), np.float32))
            seconds.append(time.process_time() - start)
        predicted = classify(np.stack(arrays))
        correct = 100.0 * float(np.mean(predicted == np.array([label for _, label in samples])))
        ms = 1000 * float(np.median(seconds))
        reference = reference or ms
        print(f"| {name} | {len(samples)} | {correct:.2f} | {ms:.2f} | {ms / reference:.1f} |")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-base", type=Path, default=Path("models"))
    default_data = Path(os.environ.get("MNIST_NPZ", "data/mnist-sample.npz"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--count", type=int, default=2000, help="MNIST test digits per condition")
    parser.add_argument("--only", default="", help="run the conditions whose name contains this")
    parser.add_argument(
        "--compare-with", type=Path, help="another checkout: compare outputs, no model needed"
    )
    parser.add_argument(
        "--photos",
        type=int,
        metavar="N",
        default=0,
        help="instead: N photos of digits on paper per photo condition, through ours",
    )
    args = parser.parse_args()

    with np.load(args.data) as data:
        x_test, y_test = data["x_test"][: args.count], data["y_test"][: args.count]
    if args.compare_with:
        compare(args.compare_with.resolve(), make_conditions(x_test, y_test, args.only))
        return
    classify, model_path = load_signature(args.export_base)
    raw = 100.0 * float(np.mean(classify((x_test[..., None] / 255.0).astype(np.float32)) == y_test))
    print(f"model {model_path}; {len(x_test)} MNIST test digits from {args.data}")
    print(f"raw arrays straight into the model: {raw:.2f}%\n")
    if args.photos:
        print_photo_table(classify, x_test, y_test, args.photos, args.only)
        return
    conditions = make_conditions(x_test, y_test, args.only)

    names = list(PIPELINES)
    print("| condition | n | " + " | ".join(names) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in names) + " |")
    timings = {name: [] for name in names}
    for condition, samples in conditions.items():
        cells = []
        for name in names:
            pipeline, constants = PIPELINES[name]
            with patched(**constants):
                value, ms = accuracy(classify, pipeline, samples)
            timings[name].append(ms)
            cells.append(f"{value:.2f}")
        print(f"| {condition} | {len(samples)} | " + " | ".join(cells) + " |")
    print(
        "| preprocessing ms/image (mean over conditions) | | "
        + " | ".join(f"{np.mean(timings[name]):.2f}" for name in names)
        + " |"
    )


if __name__ == "__main__":
    main()

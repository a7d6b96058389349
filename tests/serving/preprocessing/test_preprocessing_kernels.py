"""serving.preprocessing.kernels: each compiled loop gives exactly what the numpy
expression it replaced gives, and the whole pipeline exactly what the numpy pipeline gave
(tests/serving/preprocessing/numpy_preprocessing.py), on uploads of every kind the gateway sees."""

import io
import itertools
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

import serving.preprocessing as P
from client.payloads import photo_jpeg
from serving.errors import BadImage, GatewayError, NoInk, PayloadTooLarge
from serving.preprocessing import decode, mnist_like, prepare, to_grayscale
from serving.preprocessing import kernels as K
from tests.serving.preprocessing.numpy_preprocessing import mnist_like as numpy_mnist_like
from tests.utils.environment import REPO_ROOT
from tests.utils.imagefiles import encode, small_off_centre, transparent_canvas


def _random_images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    for shape in shapes:
        yield rng.integers(0, 256, shape).astype(np.float32) / 255.0  # what 8-bit uploads give
        yield rng.random(shape, dtype=np.float32) ** 4  # any float32, tiny values too


SHAPES = [(1, 1), (1, 2), (2, 1), (1, 7), (9, 1), (2, 2), (3, 5), (28, 28), (20, 13), (64, 64)]
SHAPES += [(40, 90), (100, 70), (33, 130)]


def _frame_of(pixels):
    band = max(1, min(pixels.shape) // 32)
    pieces = [pixels[:band], pixels[-band:], pixels[:, :band], pixels[:, -band:]]
    return np.concatenate([piece.ravel() for piece in pieces])


def test_the_border_is_a_frame_a_few_percent_wide():
    for gray in _random_images([*SHAPES, (300, 200)]):
        assert K.border(gray).tobytes() == _frame_of(gray).tobytes()


def test_median_and_percentile_are_numpys():
    rng = np.random.default_rng(1)
    for count in [*range(1, 40), 127, 128, 1000, 1001]:
        values = rng.random(count, dtype=np.float32) ** 3
        assert K.median(values) == np.median(values)
        for q in (90, 99):
            assert K.percentile(values, q) == float(np.percentile(values, q))


def test_blur_extremes_are_those_of_the_3x3_box_mean():
    for gray in _random_images(SHAPES):
        padded = np.pad(gray, 1, mode="edge")
        height, width = gray.shape
        total = padded[:height, :width].copy()
        for dy, dx in itertools.product(range(3), range(3)):
            if dy or dx:
                total += padded[dy : dy + height, dx : dx + width]
        mean = total / 9.0
        assert K.blurred_extremes(gray) == (float(mean.min()), float(mean.max()))


def test_bounding_box_is_that_of_the_ink_above_the_floor():
    rng = np.random.default_rng(2)
    for shape in SHAPES:
        ink = rng.random(shape, dtype=np.float32) * (rng.random(shape) > 0.9)
        rows, cols = np.nonzero(ink > 0.5)
        expected = (-1, -1, -1, -1)  # no ink
        if rows.size:
            expected = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
        assert K.bounding_box(ink, 0.5) == expected


def test_stroke_width_is_twice_the_area_over_the_perimeter():
    rng = np.random.default_rng(4)
    for shape in SHAPES:
        ink = rng.random(shape, dtype=np.float32) ** 0.3
        mask = np.pad(ink > 0.5, 1)  # nothing outside the image is stroke
        inner = mask[1:-1, 1:-1]
        interior = inner & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        area = int(inner.sum())
        expected = 2.0 * area / max(area - int(interior.sum()), 1) if area else 0.0
        assert K.stroke_width(ink) == expected


def test_sums_add_as_numpy_adds():
    """numpy's pairwise summation, reproduced: float32 totals differ in the last bits
    from a plain running sum, and the centre of mass is rounded from them."""
    rng = np.random.default_rng(5)
    for count in range(1, 700):
        values = rng.random(count, dtype=np.float32) ** 3
        assert K.pairwise_sum(values) == values.sum()
        assert K.pairwise_sum(values.astype(np.float64)) == values.astype(np.float64).sum()


def test_centre_of_mass_placement_matches_the_np_indices_formula():
    rng = np.random.default_rng(3)
    for _ in range(300):
        shape = tuple(rng.integers(1, 21, 2))
        drawn = (rng.random(shape, dtype=np.float32) ** rng.integers(1, 9)).astype(np.float32)
        digit = drawn / drawn.max()
        rows, cols = np.indices(digit.shape)
        total = float(digit.sum())
        top = round(14.0 - float((rows * digit).sum()) / total)
        left = round(14.0 - float((cols * digit).sum()) / total)
        top, left = min(max(top, 0), 28 - shape[0]), min(max(left, 0), 28 - shape[1])
        expected = np.zeros((28, 28), np.float32)
        expected[top : top + shape[0], left : left + shape[1]] = digit
        assert K.place_by_centre_of_mass(drawn, 28, 14.0).tobytes() == expected.tobytes()
    assert K.place_by_centre_of_mass(np.zeros((3, 3), np.float32), 28, 14.0) is None
    with pytest.raises(ValueError, match="larger than the frame"):
        K.place_by_centre_of_mass(np.ones((29, 3), np.float32), 28, 14.0)
    assert K.unfiltered_gray(np.zeros(10, np.uint8), 3, 3) is None  # not 3 * (3 + 1) bytes


# --- the whole pipeline against the numpy one ---------------------------------------------


def _uploads(mnist_sample):
    """(name, file bytes): what the gateway is sent, from clean MNIST PNGs to phone photos."""
    rng = np.random.default_rng(6)
    digits = mnist_sample["x_test"]
    for index, digit in enumerate(digits):
        yield f"mnist {index}", encode(Image.fromarray(digit))
        yield f"mnist {index} dark on white", encode(Image.fromarray(255 - digit))
    for index, digit in enumerate(digits[:100]):
        noisy = np.clip(200 - 0.6 * digit + rng.normal(0, 8, digit.shape), 0, 255)
        yield f"noisy {index}", encode(Image.fromarray(noisy.astype(np.uint8)))
        ys, xs = np.mgrid[0:84, 0:84] / 84
        ink = np.asarray(Image.fromarray(digit).resize((84, 84))) / 255.0
        shaded = (235 - 70 * xs * ys) * (1 - 0.8 * ink)
        yield f"shaded {index}", encode(Image.fromarray(shaded.astype(np.uint8)))
        yield f"jpeg {index}", encode(Image.fromarray(255 - digit).resize((112, 112)), "JPEG")
    for index, digit in enumerate(digits[:30]):
        yield f"canvas {index}", encode(transparent_canvas(digit))
        yield f"off centre {index}", encode(Image.fromarray(small_off_centre(digit)))
    for index, digit in enumerate(digits[:4]):
        yield f"photo {index}", photo_jpeg(digit, rng, size=(640, 480))
    for width in (1, 2, 3, 5):  # hairlines are thickened, thin lines kept thin
        page = Image.new("L", (300, 400), 255)
        ImageDraw.Draw(page).line([(80, 60), (220, 60), (150, 350)], fill=0, width=width)
        yield f"line {width} px", encode(page)
    for index, gray in enumerate(_random_images(SHAPES, seed=7)):
        yield f"random {gray.shape} {index}", encode(Image.fromarray(gray, mode="F"), "TIFF")


def _outcome(pipeline, gray, lossy):
    try:
        return pipeline(gray, lossy=lossy).tobytes()
    except NoInk as error:
        return str(error)


def test_the_pipeline_gives_exactly_what_the_numpy_pipeline_gave(mnist_sample):
    compared = 0
    for name, data in _uploads(mnist_sample):
        image, facts = decode(data, max_pixels=40_000_000)
        gray = to_grayscale(image)
        expected = _outcome(numpy_mnist_like, gray, facts.lossy)
        assert _outcome(mnist_like, gray, facts.lossy) == expected, name
        if not isinstance(expected, str):
            assert prepare(image, facts).tobytes() == expected, name
        compared += 1
    assert compared > 2000


def test_kernels_loaded_from_the_disk_cache_give_the_same_answers(tmp_path, mnist_sample):
    """numba compiles on the first run and loads its cache on the next (every gateway
    worker after the first does): both runs must agree with this process."""
    digit = mnist_sample["x_test"][0].astype(np.float32) / 255.0
    np.save(tmp_path / "digit.npy", digit)
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from serving.preprocessing import mnist_like
        digit = np.load({str(tmp_path / "digit.npy")!r})
        sys.stdout.write(mnist_like(digit).tobytes().hex())
        """
    )
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert any((tmp_path / "cache").rglob("*.nbi")), "the first run cached nothing"
    assert runs == [mnist_like(digit).tobytes().hex()] * 2


def test_without_a_writable_cache_directory_kernels_are_compiled_in_memory():
    """numba refuses cache=True where no cache directory is writable (here: a function
    with no source file); a read-only container must still start."""
    namespace = {}
    exec("def add_one(values):\n    return values + 1\n", namespace)
    add_one = K.kernel(namespace["add_one"])
    assert add_one(np.arange(3)).tolist() == [1, 2, 3]


# --- plain grayscale PNGs, decoded without Pillow -----------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return len(payload).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")


def _filtered(pixels: np.ndarray, kinds) -> bytes:
    """The PNG filters (spec section 9) applied row by row: what an encoder writes."""
    rows = []
    above = np.zeros(pixels.shape[1], np.int64)
    for row, kind in zip(pixels.astype(np.int64), kinds, strict=True):
        left = np.concatenate([[0], row[:-1]])
        upper_left = np.concatenate([[0], above[:-1]])
        estimate = left + above - upper_left
        distances = np.abs(estimate[None] - np.stack([left, above, upper_left]))
        paeth = np.choose(np.argmin(distances, axis=0), [left, above, upper_left])
        predictors = [0, left, above, (left + above) // 2, paeth]
        predictor = predictors[kind] if kind < len(predictors) else 0  # an invalid kind too
        rows.append(bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes())
        above = row
    return b"".join(rows)


def _gray_png(pixels: np.ndarray, kinds=None, *, extra: bytes = b"", idat_parts: int = 1) -> bytes:
    height, width = pixels.shape
    kinds = [y % 5 for y in range(height)] if kinds is None else kinds
    stream = zlib.compress(_filtered(pixels, kinds))
    cut = np.linspace(0, len(stream), idat_parts + 1).astype(int)
    idat = b"".join(_chunk(b"IDAT", stream[a:b]) for a, b in itertools.pairwise(cut))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + extra + idat + _chunk(b"IEND", b"")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pillow_gray(data: bytes) -> np.ndarray:
    return to_grayscale(Image.open(io.BytesIO(data)))


def test_plain_gray_pngs_decode_to_pillows_gray_levels_with_every_filter():
    rng = np.random.default_rng(8)
    for shape in [(1, 1), (1, 9), (7, 1), (28, 28), (5, 300), (512, 512)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        for kinds in ([0] * shape[0], [1] * shape[0], [4] * shape[0], None):
            for extra in (b"", _chunk(b"gAMA", (45455).to_bytes(4, "big"))):
                data = _gray_png(pixels, kinds, extra=extra, idat_parts=3)
                gray, facts = decode(data, max_pixels=40_000_000)
                assert isinstance(gray, np.ndarray), "not decoded on the plain path"
                assert (facts.format, facts.mode) == ("PNG", "L")
                assert gray.tobytes() == _pillow_gray(data).tobytes()
    mnist_png = encode(Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)))
    assert isinstance(decode(mnist_png, max_pixels=784)[0], np.ndarray)  # as Pillow saves it


def _split_idat(data: bytes) -> bytes:
    """The PNG with a gAMA chunk between its first two IDAT chunks."""
    second = data.index(b"IDAT", data.index(b"IDAT") + 4) - 4
    return data[:second] + _chunk(b"gAMA", (45455).to_bytes(4, "big")) + data[second:]


def _outcome_of_decoding(data: bytes, max_pixels: int = 40_000_000):
    try:
        image, facts = decode(data, max_pixels=max_pixels)
        return facts, to_grayscale(image).tobytes()
    except GatewayError as error:
        return type(error), error.message


def test_any_other_png_is_left_to_pillow_and_judged_as_before(mnist_sample, monkeypatch):
    digit = mnist_sample["x_test"][0]
    plain = _gray_png(digit)
    broken_crc = bytearray(plain)
    broken_crc[8 + 25 + 10] ^= 0xFF  # inside the IDAT chunk (after signature and IHDR)
    others = {
        "bad CRC": bytes(broken_crc),
        "truncated": plain[:-20],
        "trailing bytes": plain + b"junk",
        "image data split by another chunk": _split_idat(_gray_png(digit, idat_parts=2)),
        "a filter type over 4": _gray_png(digit, [5] * 28),
        "transparency": _gray_png(digit, extra=_chunk(b"tRNS", b"\x00\x00")),
        "EXIF": _gray_png(digit, extra=_chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00")),
        "XMP in a text chunk": _gray_png(digit, extra=_chunk(b"tEXt", b"XML:com.adobe.xmp\0<x/>")),
        "16-bit": encode(Image.fromarray(digit.astype(np.uint16) * 200)),
        "RGB": encode(Image.fromarray(np.stack([digit] * 3, -1))),
        "too many pixels for the plain path": _gray_png(np.eye(600, dtype=np.uint8) * 255),
    }
    interlaced = bytearray(_gray_png(digit))
    interlaced[28] = 1  # the IHDR's interlace byte (its CRC now wrong too)
    others["interlace flag"] = bytes(interlaced)
    for name, data in others.items():
        assert P._plain_gray_png(data, 40_000_000) is None, name
    outcomes = {name: _outcome_of_decoding(data) for name, data in others.items()}
    monkeypatch.setattr(P, "_plain_gray_png", lambda data, max_pixels: None)
    for name, data in others.items():
        assert outcomes[name] == _outcome_of_decoding(data), name
    assert outcomes["bad CRC"][0] is BadImage
    assert outcomes["trailing bytes"][0].mode == "L"  # Pillow reads it; the plain path did not


def test_the_pixel_limit_holds_on_the_plain_path(mnist_sample):
    plain = _gray_png(mnist_sample["x_test"][0])
    assert _outcome_of_decoding(plain, max_pixels=784)[0].mode == "L"
    assert _outcome_of_decoding(plain, max_pixels=783)[0] is PayloadTooLarge

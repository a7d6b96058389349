"""serving.preprocessing.kernels: each compiled loop gives exactly what the numpy
expression it replaced gives, and the whole pipeline exactly what the numpy pipeline gave
(tests/serving/preprocessing/numpy_preprocessing.py), on uploads of every kind the gateway sees."""

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

from client.payloads import photo_jpeg
from serving.errors import NoInk
from serving.preprocessing import decode, mnist_like, open_image, preprocess
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
        opened = open_image(data, max_pixels=40_000_000)
        gray = decode(opened)
        expected = _outcome(numpy_mnist_like, gray, opened.lossy)
        assert _outcome(mnist_like, gray, opened.lossy) == expected, name
        if not isinstance(expected, str):
            assert preprocess(data, max_pixels=40_000_000).tobytes() == expected, name
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

"""The compiled pixel loops of serving.preprocessing: each computes the plain numpy
expression its docstring names, within float32 rounding (TOLERANCE), on arrays of every
shape the pipeline hands them. The pipeline as a whole is held to behaviour by
test_preprocessing.py and, through HTTP, by the accuracy tests."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageFilter

from serving.preprocessing import (
    ink_kernels,
    kernels,
    mnist_like,
    placement_kernels,
)
from tests.utils.environment import REPO_ROOT

# A loop adds in another order than numpy's pairwise sums and divides where numpy may
# multiply by a reciprocal: float32 results differ in the last bits, never by more.
TOLERANCE = 1e-6


def _random_images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    for shape in shapes:
        yield rng.integers(0, 256, shape).astype(np.float32) / 255.0  # what 8-bit uploads give
        yield rng.random(shape, dtype=np.float32) ** 4  # any float32, tiny values too


SHAPES = [(1, 1), (1, 2), (2, 1), (1, 7), (9, 1), (2, 2), (3, 5), (28, 28), (20, 13), (64, 64)]
SHAPES += [(40, 90), (100, 70), (33, 130)]


def _close(ours, reference):
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)


def test_the_border_is_a_frame_a_few_percent_wide():
    for gray in _random_images([*SHAPES, (300, 200)]):
        band = max(1, min(gray.shape) // 32)
        pieces = [gray[:band], gray[-band:], gray[:, :band], gray[:, -band:]]
        frame = np.concatenate([piece.ravel() for piece in pieces])
        assert ink_kernels.border(gray).tobytes() == frame.tobytes()  # a copy: exact


def test_blur_extremes_are_those_of_the_3x3_box_mean():
    for gray in _random_images(SHAPES):
        padded = np.pad(gray, 1, mode="edge")
        height, width = gray.shape
        windows = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
        mean = np.mean(windows, axis=0)
        _close(ink_kernels.blurred_extremes(gray), (mean.min(), mean.max()))


@pytest.mark.parametrize("dark_ink", [True, False])
def test_ink_against_a_flat_or_a_shaded_background(dark_ink):
    rng = np.random.default_rng(1)
    for gray in _random_images(SHAPES, seed=2):
        background, contrast = 0.8, float(rng.uniform(0.2, 1.0))
        difference = background - gray if dark_ink else gray - background
        _close(ink_kernels.ink_against(gray, background, dark_ink, contrast), difference / contrast)
        paper = rng.random(gray.shape, dtype=np.float32)
        difference = np.clip(paper, 0.3, 0.7) - gray
        shaded = ink_kernels.ink_against_paper(gray, paper, 0.3, 0.7, dark_ink)
        _close(shaded, difference if dark_ink else -difference)


def test_in_place_rescaling_normalising_and_clearing():
    for gray in _random_images(SHAPES, seed=3):
        ink = gray.copy()
        ink_kernels.rescale(ink, 0.6)
        _close(ink, gray * 0.6)
        ink = gray.copy()
        ink_kernels.normalise(ink, 0.7)
        _close(ink, np.clip(gray / 0.7, 0, 1))
        ink = gray.copy()
        ink_kernels.clear_below(ink, 0.3)
        assert ink.tobytes() == np.where(gray < 0.3, 0, gray).astype(np.float32).tobytes()


def test_percentiles_and_medians_of_the_strokes_and_the_background():
    rng = np.random.default_rng(4)
    for count in [1, 2, 3, 10, 127, 128, 1001]:
        values = rng.random(count, dtype=np.float32) ** 3
        _close(ink_kernels.stroke_peak(values.reshape(1, -1), 0.1), _strokes_peak(values))
        spread = 1.4826 * np.median(np.abs(values - np.median(values)))
        _close(ink_kernels.robust_spread(values), spread)
        stretched = placement_kernels.stretch_to_percentile(values.reshape(1, -1), 90)
        _close(stretched.ravel(), np.clip(values / np.percentile(values[values > 0], 90), 0, 1))
    assert ink_kernels.stroke_peak(np.zeros((4, 4), np.float32), 0.1) is None


def _strokes_peak(values):
    strokes = values[values > 0.1]
    return np.percentile(strokes, 99) if strokes.size else None


def test_bounding_box_is_that_of_the_ink_above_the_floor():
    rng = np.random.default_rng(5)
    for shape in SHAPES:
        ink = rng.random(shape, dtype=np.float32) * (rng.random(shape) > 0.9)
        rows, cols = np.nonzero(ink > 0.5)
        expected = (-1, -1, -1, -1)  # no ink
        if rows.size:
            expected = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
        assert kernels.bounding_box(ink, 0.5) == expected
        spans = rows.size and (
            expected[1] - expected[0] >= 0.8 * shape[0]
            and expected[3] - expected[2] >= 0.8 * shape[1]
        )
        assert ink_kernels.fills_frame(ink, 0.8) == bool(spans)


def test_the_box_grows_over_faint_ink_one_ring_at_a_time():
    ink = np.zeros((10, 10), np.float32)
    ink[4:6, 4:6] = 1.0
    ink[3, 4] = ink[6, 5] = 0.01  # faint rim above and below, none at the sides
    assert placement_kernels.grow_over_faint_edges(ink, 4, 6, 4, 6, 1) == (3, 7, 4, 6)
    ink[2, 4] = 0.01
    assert placement_kernels.grow_over_faint_edges(ink, 4, 6, 4, 6, 1) == (3, 7, 4, 6)
    assert placement_kernels.grow_over_faint_edges(ink, 4, 6, 4, 6, 2) == (2, 7, 4, 6)
    assert placement_kernels.grow_over_faint_edges(ink, 0, 10, 0, 10, 1) == (0, 10, 0, 10)


def test_stroke_width_is_twice_the_area_over_the_perimeter():
    rng = np.random.default_rng(6)
    for shape in SHAPES:
        ink = rng.random(shape, dtype=np.float32) ** 0.3
        mask = np.pad(ink > 0.5, 1)  # nothing outside the image is stroke
        inner = mask[1:-1, 1:-1]
        interior = inner & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        area = int(inner.sum())
        expected = 2.0 * area / max(area - int(interior.sum()), 1) if area else 0.0
        assert kernels.stroke_width(ink) == pytest.approx(expected)


def test_pieces_are_scipys_8_connected_labels_with_their_boxes_and_ink():
    from scipy import ndimage

    for ink in _random_images([*SHAPES, (150, 200)], seed=3):
        for floor in (0.5, 0.9):
            labels, count = ndimage.label(ink > floor, structure=np.ones((3, 3)))
            ours, pieces = kernels.labelled_pieces(ink, floor)
            np.testing.assert_array_equal(ours, labels)
            np.testing.assert_array_equal(kernels.pieces(ink, floor), pieces)
            assert len(pieces) == count
            boxes = ndimage.find_objects(labels)
            masses = ndimage.sum_labels(ink, labels, range(1, count + 1))
            for row, box, mass in zip(pieces, boxes, masses, strict=True):
                assert tuple(row[1:]) == (box[0].start, box[0].stop, box[1].start, box[1].stop)
                assert row[0] == pytest.approx(mass, rel=1e-5)
    assert kernels.pieces(np.zeros((5, 5), np.float32), 0.1).shape == (0, 5)


@pytest.mark.parametrize("size", [3, 5, 9, 15])
def test_the_square_extremes_are_pillows_max_and_min_filters(size):
    rng = np.random.default_rng(size)
    ink = rng.random((70, 50), dtype=np.float32) * (rng.random((70, 50)) > 0.97)
    padded = np.pad(ink, size)
    padded[: size // 2] += rng.random((size // 2, padded.shape[1]), dtype=np.float32)  # edges
    for maximum, pillow_filter in ((True, ImageFilter.MaxFilter), (False, ImageFilter.MinFilter)):
        pillow = Image.fromarray(padded, mode="F").filter(pillow_filter(size))
        ours = kernels.square_extreme(padded, size, maximum)
        assert ours.tobytes() == np.asarray(pillow, dtype=np.float32).tobytes()


def test_centre_of_mass_placement_matches_the_np_indices_formula():
    rng = np.random.default_rng(7)
    for _ in range(300):
        shape = tuple(rng.integers(1, 21, 2))
        drawn = (rng.random(shape, dtype=np.float32) ** rng.integers(1, 9)).astype(np.float32)
        digit = drawn / drawn.max()
        rows, cols = np.indices(digit.shape)
        total = float(digit.sum())
        top = round(14.0 - float((rows * digit).sum()) / total)
        left = round(14.0 - float((cols * digit).sum()) / total)
        top, left = min(max(top, 0), 28 - shape[0]), min(max(left, 0), 28 - shape[1])
        placed = placement_kernels.place_by_centre_of_mass(drawn, 28, 14.0)
        expected = np.zeros((28, 28), np.float32)
        expected[top : top + shape[0], left : left + shape[1]] = digit
        _close(placed, expected)
    assert placement_kernels.place_by_centre_of_mass(np.zeros((3, 3), np.float32), 28, 14.0) is None
    with pytest.raises(ValueError, match="larger than the frame"):
        placement_kernels.place_by_centre_of_mass(np.ones((29, 3), np.float32), 28, 14.0)


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
    add_one = kernels.kernel(namespace["add_one"])
    assert add_one(np.arange(3)).tolist() == [1, 2, 3]

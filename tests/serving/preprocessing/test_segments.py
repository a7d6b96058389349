"""Reading a number: one line of ink cut into segments (serving.preprocessing.segments)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from client.payloads import compose_number
from serving.errors import NoInk, TooManySegments
from serving.preprocessing import mnist_like, read_segments
from serving.preprocessing.ink import NOISE_FLOOR, ink_map
from serving.preprocessing.kernels import labelled_pieces


def _gray(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _first(mnist_sample, *labels: int) -> list[np.ndarray]:
    x_test, y_test = mnist_sample["x_test"], mnist_sample["y_test"]
    return [x_test[int(np.flatnonzero(y_test == label)[0])] for label in labels]


def _pieces_of(image: np.ndarray) -> int:
    return len(labelled_pieces(ink_map(_gray(image)), NOISE_FLOOR)[1])


def _assert_boxes_close(segments, boxes, tolerance: int = 3) -> None:
    assert len(segments) == len(boxes)
    for segment, (x, y, width, height) in zip(segments, boxes, strict=True):
        top, bottom, left, right = segment.box
        assert abs(left - x) <= tolerance
        assert abs(right - (x + width)) <= tolerance
        assert abs(top - y) <= tolerance
        assert abs(bottom - (y + height)) <= tolerance


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_a_number_is_cut_into_its_digits_left_to_right_each_made_mnist_like(mnist_sample):
    digits = _first(mnist_sample, 2, 0, 2, 4)
    number = compose_number(digits, gaps=[14, 20, 10])
    segments = read_segments(_gray(number.image), max_segments=32)
    _assert_boxes_close(segments, number.boxes)
    assert not any(segment.mark for segment in segments)
    for segment, digit in zip(segments, digits, strict=True):
        assert segment.frame.shape == (28, 28, 1)
        # The same digit uploaded alone, as /v1/predict would make it.
        alone = mnist_like(_gray(255 - digit))
        assert _correlation(segment.frame, alone) > 0.9


def test_a_digit_drawn_in_two_strokes_is_one_segment():
    page = Image.new("L", (200, 160), 255)
    draw = ImageDraw.Draw(page)
    draw.line([(70, 30), (130, 30)], fill=0, width=7)  # a 5's top bar, floating
    draw.line([(72, 42), (70, 80)], fill=0, width=7)
    draw.arc([(62, 66), (132, 130)], start=-120, end=150, fill=0, width=7)
    image = np.asarray(page)
    assert _pieces_of(image) == 3  # bar, stem and bowl: none touches another
    segments = read_segments(_gray(image), max_segments=32)
    assert len(segments) == 1
    top, bottom, left, right = segments[0].box
    assert top <= 28
    assert bottom >= 128
    assert left <= 68
    assert right >= 130


def test_touching_digits_are_split_where_the_ink_is_least(mnist_sample):
    digits = _first(mnist_sample, 2, 3)
    number = compose_number(digits, gaps=[-3])
    assert _pieces_of(number.image) == 1  # the 2's foot touches the 3
    segments = read_segments(_gray(number.image), max_segments=32)
    assert len(segments) == 2
    _assert_boxes_close(segments, number.boxes, tolerance=6)


def test_a_dash_and_a_dot_are_marks_not_digits(mnist_sample):
    number = compose_number(_first(mnist_sample, 1, 2, 3, 4), gaps=[14, 60, 14])
    height, width = number.image.shape
    page = Image.new("L", (width + 40, height), 255)  # room for a dot at the end
    page.paste(Image.fromarray(number.image), (0, 0))
    draw = ImageDraw.Draw(page)
    (x2, y2, w2, h2), (x3, _, _, _) = number.boxes[1], number.boxes[2]
    middle = y2 + h2 // 2
    draw.line([(x2 + w2 + 18, middle), (x3 - 18, middle)], fill=0, width=7)  # a dash
    right = number.boxes[3][0] + number.boxes[3][2]
    bottom = y2 + h2
    draw.ellipse([(right + 10, bottom - 8), (right + 18, bottom)], fill=0)  # a dot
    segments = read_segments(_gray(np.asarray(page)), max_segments=32)
    assert [segment.mark for segment in segments] == [False, False, True, False, False, True]


def test_a_wavy_baseline_keeps_the_reading_order(mnist_sample):
    digits = _first(mnist_sample, 7, 1, 9, 3, 5)
    number = compose_number(digits, baseline_jitter=20, rng=np.random.default_rng(2))
    segments = read_segments(_gray(number.image), max_segments=32)
    _assert_boxes_close(segments, number.boxes)


def test_dust_is_no_segment(mnist_sample):
    number = compose_number(_first(mnist_sample, 4, 2))
    image = number.image.copy()
    rng = np.random.default_rng(0)
    for y, x in zip(
        rng.integers(0, image.shape[0], 12), rng.integers(0, image.shape[1], 12), strict=True
    ):
        image[y, x] = 60  # single specks of grain
    segments = read_segments(_gray(image), max_segments=32)
    _assert_boxes_close(segments, number.boxes)


def test_more_segments_than_allowed_are_refused_and_a_blank_image_has_no_ink():
    page = np.full((120, 600), 255, np.uint8)
    for column in range(40):
        page[40:80, 10 + 14 * column : 16 + 14 * column] = 0  # 40 strokes
    with pytest.raises(TooManySegments, match="40"):
        read_segments(_gray(page), max_segments=32)
    assert len(read_segments(_gray(page), max_segments=40)) == 40
    with pytest.raises(NoInk):
        read_segments(np.ones((50, 200), np.float32), max_segments=32)


def test_a_number_small_in_a_large_image_is_found_through_the_coarse_view(mnist_sample):
    number = compose_number(_first(mnist_sample, 3, 8, 6))
    page = np.full((1500, 2000), 235, np.uint8)
    height, width = number.image.shape
    page[900 : 900 + height, 1200 : 1200 + width] = np.minimum(235, number.image)
    segments = read_segments(_gray(page), max_segments=32)
    shifted = [(x + 1200, y + 900, w, h) for x, y, w, h in number.boxes]
    _assert_boxes_close(segments, shifted, tolerance=8)  # the region is box-averaged

"""The region stage: a large image is looked at small, and only the region around the
digit goes on, at the resolution the 20-pixel box needs."""

import io

import numpy as np
from PIL import Image

from client.payloads import photo_jpeg
from serving.preprocessing import decode, mnist_like, open_image
from serving.preprocessing.kernels import digit_box
from serving.preprocessing.region import COARSE_SIDE, DIGIT_PIXELS, digit_region

MAX_PIXELS = 40_000_000


def _piece(mass, top, bottom, left, right):
    return [mass, top, bottom, left, right]


def test_the_heaviest_piece_is_the_digit_and_dust_is_left_out():
    pieces = np.array(
        [_piece(0.5, 2, 3, 2, 3), _piece(40, 50, 70, 60, 75), _piece(0.3, 90, 91, 5, 6)]
    )
    assert digit_box(pieces) == (50, 70, 60, 75)


def test_strokes_near_the_digit_join_it_and_far_or_faint_ones_do_not():
    digit = _piece(40, 50, 70, 60, 75)
    floating_bar = _piece(8, 44, 47, 60, 78)  # 3 pixels above: a 5's top bar
    far_mark = _piece(1.5, 10, 12, 150, 152)  # as heavy as dust may be, far away
    faint_neighbour = _piece(1.0, 72, 74, 60, 62)  # under 5% of the digit's ink
    pieces = np.array([far_mark, digit, floating_bar, faint_neighbour])
    assert digit_box(pieces) == (44, 70, 60, 78)


def test_where_much_ink_lies_away_from_the_digit_there_is_no_region():
    digit = _piece(40, 50, 70, 60, 75)
    other_writing = _piece(20, 10, 30, 150, 170)  # half as much ink, far away
    assert digit_box(np.array([digit, other_writing])) is None
    assert digit_box(np.zeros((0, 5))) is None


def test_a_small_image_is_its_own_region():
    gray = np.ones((COARSE_SIDE, COARSE_SIDE // 2), np.float32)
    gray[20:60, 30:34] = 0.0
    assert digit_region(gray) is gray


def test_a_digit_small_in_a_photo_is_cut_out_with_paper_around_it(mnist_sample):
    digit = mnist_sample["x_test"][0]
    data = photo_jpeg(digit, np.random.default_rng(4), (1600, 1200), fraction=(0.12, 0.12))
    opened = open_image(data, max_pixels=MAX_PIXELS)
    gray = decode(opened)
    region = digit_region(gray, lossy=True)
    # Worked on at 800x600: the digit's ink is 12% of the height (72 px), in a region
    # of about 1.5x that.
    assert gray.shape == (600, 800)
    assert 72 <= max(region.shape) <= 2.5 * 72
    # The region's border is paper: brighter than the ink everywhere.
    border = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    assert border.min() > region.min() + 0.2


def test_a_large_digit_is_shrunk_to_the_resolution_the_box_needs():
    page = np.ones((2000, 2000), np.float32)
    page[400:1600, 900:1100] = 0.0  # a 1 of 1,200 pixels
    region = digit_region(page)
    assert max(region.shape) <= 1.5 * 2 * DIGIT_PIXELS
    shrunk, whole = mnist_like(region).ravel(), mnist_like(page[300:1700, 700:1300]).ravel()
    assert np.corrcoef(shrunk, whole)[0, 1] > 0.95


def test_a_4000x3000_jpeg_is_decoded_small_in_the_dct():
    page = Image.new("L", (4000, 3000), 230)
    page.paste(0, (1800, 1200, 2000, 1800))
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=85)
    gray = decode(open_image(buffer.getvalue(), max_pixels=MAX_PIXELS))
    assert gray.shape == (750, 1000)


def test_a_progressive_jpeg_photo_is_decoded_small_and_its_digit_found(mnist_sample):
    digit = mnist_sample["x_test"][0]
    page = np.full((3000, 4000), 225.0)
    pen = np.asarray(Image.fromarray(digit).resize((500, 500)), dtype=np.float64) / 255.0
    page[2300:2800, 3100:3600] *= 1.0 - pen  # dark ink on the paper, near a corner
    page = Image.fromarray(page.astype(np.uint8))
    progressive, baseline = io.BytesIO(), io.BytesIO()
    page.save(progressive, "JPEG", quality=85, progressive=True)
    page.save(baseline, "JPEG", quality=85)
    opened = open_image(progressive.getvalue(), max_pixels=MAX_PIXELS)
    gray = decode(opened)
    assert gray.shape == (750, 1000)
    region = digit_region(gray, lossy=True)
    assert max(region.shape) < 250  # the digit is 94 px at this scale: not the whole page
    frame = mnist_like(gray, lossy=True)
    scan = mnist_like(digit / 255.0)
    assert np.corrcoef(frame.ravel(), scan.ravel())[0, 1] > 0.95
    assert (
        np.abs(
            frame
            - mnist_like(decode(open_image(baseline.getvalue(), max_pixels=MAX_PIXELS)), lossy=True)
        ).max()
        < 0.1
    )

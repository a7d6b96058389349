"""training/negatives.py: the "not a digit" examples, exactly as the gateway hands them to
the model, with nothing a reader could take for a digit among them."""

import logging
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from contract import IMAGE_SIZE, PIXEL_MAX
from serving.errors import NoInk
from serving.preprocessing import mnist_like
from tests.utils.glyphs import DIGIT_LIKE
from training import negatives
from training.negatives import (
    LETTERS,
    NEGATIVE_KINDS,
    PEN_STROKES,
    SYMBOLS,
    font_files,
    mnist_like_coarse_digits,
    mnist_like_negatives,
    mnist_like_typed_digits,
    raw_negatives,
    split_fonts,
)

ROUND = len(NEGATIVE_KINDS)


@pytest.fixture(scope="module")
def made() -> tuple[list[tuple[str, np.ndarray]], np.ndarray, np.ndarray]:
    """Raw negatives and the same negatives as the model sees them, for one seed."""
    raw = raw_negatives(5 * ROUND, seed=4)
    images, kinds = mnist_like_negatives(5 * ROUND, seed=4)
    return raw, images, kinds


def _installed_fonts() -> list[Path]:
    fonts = font_files()
    if not fonts:
        message = "no fonts installed (make system-deps installs fonts-dejavu-core)"
        if os.environ.get("MNIST_SERVING_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    return fonts


def _gateway_view(raw: np.ndarray) -> np.ndarray:
    return np.rint(mnist_like(raw.astype(np.float32) / PIXEL_MAX)[..., 0] * PIXEL_MAX)


def test_no_table_holds_a_glyph_that_looks_like_a_digit():
    assert not DIGIT_LIKE & set(LETTERS)
    assert not DIGIT_LIKE & set(SYMBOLS)
    assert not DIGIT_LIKE & set(PEN_STROKES)
    assert len(set(LETTERS)) == len(LETTERS)
    assert len(set(SYMBOLS)) == len(SYMBOLS)


def test_negatives_come_in_the_asked_count_shape_and_range(made):
    _raw, images, kinds = made
    assert images.shape == (5 * ROUND, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8
    assert kinds.shape == (5 * ROUND,)
    # Every kind in every round of len(NEGATIVE_KINDS) images.
    assert Counter(kinds.tolist()) == dict.fromkeys(NEGATIVE_KINDS, 5)
    # Bright ink on a dark background, never blank: the gateway stretched the ink.
    assert (images.reshape(len(images), -1).max(axis=1) > 200).all()
    assert ((images > 25).sum(axis=(1, 2)) >= 10).all()
    assert (images[:, 0, :].astype(int).mean(axis=1) < 64).mean() > 0.9


def test_negatives_are_the_gateways_preprocessing_of_the_raw_images(made):
    raw, images, kinds = made
    assert [kind for kind, _ in raw] == kinds.tolist()
    for (_kind, image), seen in zip(raw, images, strict=True):
        assert image.dtype == np.uint8
        assert image.ndim == 2
        assert min(image.shape) >= 28
        assert max(image.shape) <= 200
        np.testing.assert_array_equal(seen, _gateway_view(image))


def test_raw_negatives_vary_in_size_and_come_in_both_polarities(made):
    raw, _images, _kinds = made
    sides = [max(image.shape) for _kind, image in raw]
    assert min(sides) < 50
    assert max(sides) > 100
    # The paper is the border's median: light (dark ink) and dark (light ink) both occur.
    drawn = [image for kind, image in raw if kind not in ("noise", "photo_crop")]
    papers = [
        np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]))
        for image in drawn
    ]
    assert sum(paper > 170 for paper in papers) >= 0.4 * len(papers)
    assert sum(paper < 85 for paper in papers) >= 0.15 * len(papers)


def test_a_seed_gives_the_same_negatives_and_another_seed_others(made):
    _raw, images, kinds = made
    again, again_kinds = mnist_like_negatives(2 * ROUND, seed=4)
    np.testing.assert_array_equal(again, images[: 2 * ROUND])  # a shorter run: a prefix
    np.testing.assert_array_equal(again_kinds, kinds[: 2 * ROUND])
    other, _ = mnist_like_negatives(2 * ROUND, seed=5)
    assert not np.array_equal(other, again)
    assert mnist_like_negatives(0, seed=4)[0].shape == (0, IMAGE_SIZE, IMAGE_SIZE)


def test_images_the_gateway_finds_uniform_are_replaced(monkeypatch):
    calls = Counter()

    def every_third_uniform(gray, **kw):
        calls["all"] += 1
        if calls["all"] % 3 == 0:
            calls["uniform"] += 1
            raise NoInk("uniform")
        return mnist_like(gray, **kw)

    monkeypatch.setattr(negatives, "mnist_like", every_third_uniform)
    images, kinds = mnist_like_negatives(2 * ROUND, seed=6)
    assert images.shape == (2 * ROUND, IMAGE_SIZE, IMAGE_SIZE)
    assert Counter(kinds.tolist()) == dict.fromkeys(NEGATIVE_KINDS, 2)
    assert calls["uniform"] >= ROUND // 2  # each one drawn again


def test_nothing_made_looks_like_a_one(made):
    _raw, images, _kinds = made
    one = np.ones((90, 60), np.float32)
    one[10:80, 27:34] = 0.0  # a pen stroke, upright
    assert negatives._looks_like_a_one(mnist_like(one)[..., 0])
    assert not negatives._looks_like_a_one(mnist_like(one.T)[..., 0])  # lying down: a dash
    assert not any(negatives._looks_like_a_one(image / PIXEL_MAX) for image in images)


def test_without_fonts_letters_and_symbols_are_drawn_with_the_pen_and_a_warning_says_so(
    caplog,
):
    with caplog.at_level(logging.WARNING, logger="training.negatives"):
        images, kinds = mnist_like_negatives(3 * ROUND, seed=0, fonts=[])
    assert images.shape == (3 * ROUND, IMAGE_SIZE, IMAGE_SIZE)
    counts = Counter(kinds.tolist())
    assert not {"font_letter", "font_symbol"} & set(counts)
    assert counts["pen_letter"] == 3 * 3  # its own, and both font kinds'
    warnings = [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "fonts-dejavu-core" in record.getMessage()
    ]
    assert len(warnings) == 1


def test_fonts_are_found_sorted_and_their_glyph_tables_hold_only_what_they_draw():
    fonts = _installed_fonts()
    assert fonts == sorted(fonts)
    assert all(font.suffix.lower() in (".ttf", ".otf", ".ttc") for font in fonts)
    assert all(font.is_file() for font in fonts)
    tables = {font.name: negatives._font_glyphs(str(font)) for font in fonts}
    assert any(letters for letters, _symbols in tables.values())
    for letters, symbols in tables.values():
        assert set(letters) <= set(LETTERS)
        assert set(symbols) <= set(SYMBOLS)
    # fonts-dejavu-core's serif lacks the star: its missing-glyph box is never drawn.
    if "DejaVuSerif.ttf" in tables:
        letters, symbols = tables["DejaVuSerif.ttf"]
        assert letters == LETTERS
        assert "#" in symbols
        assert "★" not in symbols


def test_fonts_split_deterministically_into_disjoint_training_and_held_out_sets():
    fonts = [Path(f"/fonts/{name}.ttf") for name in "abcdefghij"]
    shuffled = fonts[:]
    random.Random(0).shuffle(shuffled)
    training, held_out = split_fonts(shuffled)
    assert (training, held_out) == split_fonts(fonts)
    assert held_out == [Path("/fonts/d.ttf"), Path("/fonts/h.ttf")]  # every 4th by name
    assert not set(training) & set(held_out)
    assert set(training) | set(held_out) == set(fonts)
    # Two fonts: one for each side; a single font: it serves both.
    assert split_fonts(fonts[:2]) == ([fonts[0]], [fonts[1]])
    assert split_fonts(fonts[:1]) == ([fonts[0]], [fonts[0]])
    assert split_fonts([]) == ([], [])


def test_the_installed_fonts_split_with_a_held_out_share():
    fonts = _installed_fonts()
    training, held_out = split_fonts(fonts)
    if len(fonts) > 1:
        assert not set(training) & set(held_out)
        assert set(training) | set(held_out) == set(fonts)
        assert len(held_out) >= 1


def test_typed_digits_come_labelled_in_every_digit_as_the_gateway_hands_them_over():
    fonts, _held_out = split_fonts(_installed_fonts())
    images, labels = mnist_like_typed_digits(60, seed=5, fonts=fonts)
    assert images.shape == (60, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8
    assert labels.shape == (60,)
    assert set(labels.tolist()) == set(range(10))
    # The gateway's frame: bright ink on a dark border, every image with ink.
    assert (images.reshape(60, -1).max(axis=1) > PIXEL_MAX // 2).all()
    assert images[:, 0, :].max() < PIXEL_MAX // 4
    again, again_labels = mnist_like_typed_digits(60, seed=5, fonts=fonts)
    assert np.array_equal(again, images)
    assert np.array_equal(again_labels, labels)
    other, _ = mnist_like_typed_digits(60, seed=6, fonts=fonts)
    assert not np.array_equal(other, images)


def test_without_fonts_no_typed_digits_are_made():
    images, labels = mnist_like_typed_digits(10, seed=0, fonts=[])
    assert images.shape == (0, IMAGE_SIZE, IMAGE_SIZE)
    assert labels.shape == (0,)


def test_coarse_digits_keep_their_labels_and_come_as_the_gateway_hands_them_over():
    sample = np.load(Path(__file__).resolve().parents[2] / "data" / "mnist-sample.npz")
    digits, labels = sample["x_train"][:40], sample["y_train"][:40]
    images, coarse_labels = mnist_like_coarse_digits(digits, labels, 50, seed=5)
    assert images.shape == (50, IMAGE_SIZE, IMAGE_SIZE)
    assert images.dtype == np.uint8
    # Each is a coarse copy of one of the given digits, labelled as that digit: nearly
    # always nearest (cosine) to a given digit of its own label.
    assert len(set(coarse_labels.tolist())) >= 8
    views = np.stack([_gateway_view(digit) for digit in digits]).reshape(40, -1)
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    copies = images.reshape(50, -1).astype(np.float64)
    nearest = labels[np.argmax(copies @ views.T, axis=1)]
    assert (nearest == coarse_labels).mean() >= 0.8
    assert (images.reshape(50, -1).max(axis=1) > PIXEL_MAX // 2).all()
    assert images[:, 0, :].max() < PIXEL_MAX // 4
    # Coarse means softer: fewer pixels near full ink than in MNIST's own strokes.
    assert (images > 250).mean() < (digits > 250).mean()
    again, again_labels = mnist_like_coarse_digits(digits, labels, 50, seed=5)
    assert np.array_equal(again, images)
    assert np.array_equal(again_labels, coarse_labels)
    other, _ = mnist_like_coarse_digits(digits, labels, 50, seed=6)
    assert not np.array_equal(other, images)

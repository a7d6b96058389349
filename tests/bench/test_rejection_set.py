"""bench/rejection.py's non-digit evaluation set: reproducible, of the stated size, drawn
from nothing the training negatives render from, with nothing that reads as a digit."""

from bench import rejection
from tests.utils.glyphs import DIGIT_LIKE
from training.negatives import font_files, split_fonts

DIGIT_LIKE_MATHTEXT = {r"\exists", r"\wp", r"\flat", r"\propto", r"\heartsuit", r"\Diamond",
                       r"\nabla", r"\S", r"\P", r"\$", r"\infty", r"\partial", r"\circ",
                       r"\bigcirc", r"\vert", r"\mid"}  # fmt: skip
FEW = {kind: 2 for kind in rejection.KINDS}


def test_the_same_seed_draws_the_same_uploads_and_another_seed_others():
    first = rejection.non_digits(11, FEW).uploads
    assert first == rejection.non_digits(11, FEW).uploads
    other = rejection.non_digits(12, FEW).uploads
    assert all(first[kind] != other[kind] for kind in rejection.KINDS)


def test_the_set_holds_the_stated_counts():
    assert {
        kind: len(uploads) for kind, uploads in rejection.non_digits(3, FEW).uploads.items()
    } == FEW
    counts = rejection.kind_counts()
    assert counts.pop(rejection.PEN_LETTER_KIND) == 200
    assert sum(counts.values()) == 600


def test_no_font_of_the_set_is_one_the_training_negatives_render_from():
    training, _held_out = split_fonts(font_files())
    names = {path.name for path in training}
    used = rejection.evaluation_fonts()
    assert used
    for path in used:
        assert path.exists(), path
        assert path not in training, path
        assert path.name not in names, path


def test_no_table_holds_a_glyph_that_looks_like_a_digit():
    # Emoticons are left out: their ")" is a mouth, not a lone stroke.
    assert not DIGIT_LIKE & set(rejection.PEN_LETTERS + rejection.SYMBOLS)
    assert not DIGIT_LIKE_MATHTEXT & set(rejection.MATHTEXT_SYMBOLS)

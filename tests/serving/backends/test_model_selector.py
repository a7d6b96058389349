"""ModelSelector: a request's choice of model, validated once where it is made."""

import dataclasses

import pytest

from serving.backends.base import DEFAULT_MODEL, ModelSelector
from serving.errors import InvalidRequest


def test_the_default_names_neither_a_version_nor_a_label():
    assert (DEFAULT_MODEL.version, DEFAULT_MODEL.label) == (None, None)
    assert ModelSelector() == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": 0}, "model version must be a positive integer, got 0"),
        ({"version": -3}, "model version must be a positive integer, got -3"),
        ({"label": "a/b"}, "invalid version label 'a/b'"),
        ({"label": ""}, "invalid version label ''"),
        ({"label": "no spaces"}, "invalid version label 'no spaces'"),
        ({"version": 1, "label": "stable"}, "ask for a version or a label, not both"),
    ],
)
def test_a_bad_choice_is_refused_with_422(fields, message):
    with pytest.raises(InvalidRequest) as refused:
        ModelSelector(**fields)
    assert refused.value.status_code == 422
    assert refused.value.message == message


def test_selectors_are_values_a_batcher_can_queue_by():
    assert ModelSelector(version=2) == ModelSelector(version=2)
    assert len({ModelSelector(version=2), ModelSelector(version=2), ModelSelector(label="s")}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelSelector(version=2).version = 3

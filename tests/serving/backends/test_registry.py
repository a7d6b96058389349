"""The backend registry: every GATEWAY_BACKEND value has a factory, and each makes its kind."""

from typing import get_args

from serving.backends import BACKENDS, create_backend
from serving.settings import BackendKind, Settings


def test_every_backend_setting_has_exactly_one_factory():
    assert set(BACKENDS) == set(get_args(BackendKind))


def test_each_factory_makes_the_backend_it_is_named_for(tmp_path):
    made = {
        kind: create_backend(
            Settings(backend=kind, model_base_path=tmp_path, batching_enabled=False)
        )
        for kind in BACKENDS
    }
    assert {name: backend.kind for name, backend in made.items()} == {
        "embedded": "embedded",
        "grpc": "grpc",
        "rest": "rest",
    }

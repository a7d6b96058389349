"""Settings from the environment: defaults, parsing, and refusing what would pass silently."""

import re

import pytest

from contract import DIGIT_THRESHOLD
from serving.settings import SettingsError, environment_defaults, unknown_variables
from tests.utils.environment import REPO_ROOT
from tests.utils.gateway_setup import settings_from


def test_defaults_serve_the_embedded_backend_on_localhost_8000():
    settings = settings_from({})
    assert settings.backend == "embedded"
    assert str(settings.model_base_path) == "models/mnist"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


def test_values_are_parsed_from_environment_strings():
    settings = settings_from(
        {
            "GATEWAY_PORT": "9000",
            "GATEWAY_WORKERS": "4",
            "GATEWAY_BATCHING_ENABLED": "false",
            "GATEWAY_MODEL_POLL_SECONDS": "0.5",
            "GATEWAY_MODEL_BASE_PATH": "/srv/models/mnist",
            "GATEWAY_TFSERVING_VERSION_LABELS": '["stable"]',
            "HOME": "/root",  # other variables are none of our business
        }
    )
    assert (settings.port, settings.workers, settings.batching_enabled) == (9000, 4, False)
    assert settings.model_poll_seconds == 0.5
    assert str(settings.model_base_path) == "/srv/models/mnist"
    assert settings.tfserving_version_labels == ("stable",)


def test_the_digit_threshold_is_the_contracts_unless_overridden():
    assert settings_from({}).digit_threshold == DIGIT_THRESHOLD == 0.5
    assert settings_from({"GATEWAY_DIGIT_THRESHOLD": "0.9"}).digit_threshold == 0.9
    assert settings_from({"GATEWAY_DIGIT_THRESHOLD": "0"}).digit_threshold == 0.0


def test_sequences_are_json_and_a_bad_one_is_refused():
    labels = settings_from({"GATEWAY_TFSERVING_VERSION_LABELS": '["stable", "canary"]'})
    assert labels.tfserving_version_labels == ("stable", "canary")
    with pytest.raises(SettingsError) as refused:
        settings_from({"GATEWAY_TFSERVING_VERSION_LABELS": "stable,canary"})
    assert "GATEWAY_TFSERVING_VERSION_LABELS" in str(refused.value)
    assert "JSON" in str(refused.value)


def test_a_misspelt_variable_is_refused_with_a_suggestion():
    with pytest.raises(SettingsError) as refused:
        settings_from({"GATEWAY_MAX_REQUEST_BYTE": "100"})
    assert "GATEWAY_MAX_REQUEST_BYTE: not a setting" in str(refused.value)
    assert "did you mean GATEWAY_MAX_REQUEST_BYTES?" in str(refused.value)


def test_unknown_variables_are_found_whatever_their_case():
    environ = {"GATEWAY_PORT": "1", "gateway_portt": "2", "OTHER": "3"}
    assert unknown_variables(environ) == ["gateway_portt"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PORT", "70000"),
        ("GATEWAY_PORT", "http"),
        ("GATEWAY_WORKERS", "0"),
        ("GATEWAY_BACKEND", "onnx"),
        ("GATEWAY_LOG_LEVEL", "verbose"),
        ("GATEWAY_MAX_FILES_PER_REQUEST", "0"),
        ("GATEWAY_MODEL_POLL_SECONDS", "-1"),
        ("GATEWAY_BATCHING_ENABLED", "perhaps"),
        ("GATEWAY_DIGIT_THRESHOLD", "1.5"),
        ("GATEWAY_DIGIT_THRESHOLD", "-0.1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_value(variable, value):
    with pytest.raises(SettingsError) as refused:
        settings_from({variable: value})
    assert f"{variable}={value!r}" in str(refused.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as refused:
        settings_from({"GATEWAY_PORT": "x", "GATEWAY_WORKERS": "x"})
    assert "GATEWAY_PORT" in str(refused.value)
    assert "GATEWAY_WORKERS" in str(refused.value)


def test_a_bad_combination_is_refused():
    with pytest.raises(SettingsError, match="GATEWAY_TFSERVING_REST_URL"):
        settings_from({"GATEWAY_BACKEND": "rest", "GATEWAY_TFSERVING_REST_URL": "localhost"})


def readme_configuration_rows() -> dict[str, str]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(GATEWAY_\w+)` \| `([^`]*)` \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_the_readme_configuration_table_lists_every_setting_with_its_default():
    assert readme_configuration_rows() == environment_defaults()

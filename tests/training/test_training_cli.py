"""The training command line end to end: python -m training as a user runs it."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.utils.environment import REPO_ROOT, SAMPLE_PATH
from training import cli, models, recipes


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_NPZ"}
    return subprocess.run(
        [sys.executable, "-m", "training", "--data", str(SAMPLE_PATH), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_trains_exports_and_writes_report_and_tensorboard_logs(tmp_path):
    result = _run(
        "--model", "softmax", "--epochs", "2", "--export-base", str(tmp_path / "models"),
        "--logdir", str(tmp_path / "runs"), "--progress", "epoch", "--seed", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    version_dir = tmp_path / "models" / "mnist" / "1"
    assert f"exported {version_dir} (test accuracy " in result.stdout
    assert "Epoch 2/2" in result.stdout  # Keras progress output

    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert (metadata["model"], metadata["epochs"], metadata["seed"]) == ("softmax", 2, 3)

    with Image.open(version_dir / "report.png") as report:
        report.verify()
    with Image.open(version_dir / "report.png") as report:
        assert report.format == "PNG"
        assert report.width >= 800
        assert report.height >= 600
        # A real drawing, not a blank canvas.
        assert len(report.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50

    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("softmax-fast-")
    assert list((run_dir / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "validation").glob("events.out.tfevents.*"))


def test_tensorboard_logs_hold_scalars_and_histograms(tmp_path):
    import tensorflow as tf

    from training.data import MnistData, load_npz
    from training.train import TrainConfig, train

    data = load_npz(SAMPLE_PATH)
    small = MnistData(data.x_train[:256], data.y_train[:256], data.x_test[:64], data.y_test[:64],
                      data.sha256, data.source)  # fmt: skip
    config = TrainConfig(model="softmax", export_base=tmp_path / "models", epochs=1,
                         logdir=tmp_path / "runs", report=False, verbose=0)  # fmt: skip
    result = train(config, small)
    plugins: dict[str, str] = {}
    for events in (result.run_dir / "train").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                plugins[value.tag] = value.metadata.plugin_data.plugin_name
    assert plugins.get("epoch_loss") == "scalars"
    assert plugins.get("epoch_accuracy") == "scalars"
    assert plugins.get("epoch_learning_rate") == "scalars"
    assert "histograms" in plugins.values()


def test_cli_accuracy_gate_exits_non_zero_and_exports_nothing(tmp_path):
    result = _run(
        "--model", "softmax", "--epochs", "1", "--export-base", str(tmp_path / "models"),
        "--no-tensorboard", "--progress", "none", "--min-accuracy", "0.999",
    )  # fmt: skip
    assert result.returncode == cli.EXIT_GATE
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mnist-train: test accuracy ")
    assert last.endswith("is below the required 0.9990; nothing was exported")
    assert not (tmp_path / "models" / "mnist").exists() or not any(
        (tmp_path / "models" / "mnist").iterdir()
    )


def test_cli_rejects_an_unknown_model_as_a_usage_error(tmp_path):
    result = _run("--model", "resnet152", "--export-base", str(tmp_path))
    assert result.returncode == 2
    assert "unknown model 'resnet152'; choose one of softmax," in result.stderr
    assert not (tmp_path / "mnist").exists()


@pytest.mark.parametrize("flag", ["--min-accuracy=1.5", "--epochs=0", "--profile=slow"])
def test_cli_rejects_bad_flag_values(flag):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args([flag])
    assert exit_info.value.code == 2


def test_help_documents_every_flag_and_the_ladder():
    parser = cli.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text
    for name in models.LADDER:
        assert name in text
    assert "exit status" in text


def test_cli_defaults_agree_with_the_ladder():
    # cli.py keeps its own copies so that a bad path fails before TensorFlow loads.
    assert cli.DEFAULT_MODEL == models.DEFAULT_MODEL
    assert cli.DEFAULT_MODEL in models.LADDER
    assert tuple(cli.PROFILES) == tuple(recipes.PROFILES)


def test_console_script_is_declared():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'mnist-train = "training.cli:main"' in pyproject


def test_cli_refuses_an_unusable_export_base_before_training(tmp_path):
    not_a_directory = tmp_path / "models"
    not_a_directory.write_text("a file where the export base should be\n")
    result = _run("--export-base", str(not_a_directory), "--model", "softmax")
    assert result.returncode == cli.EXIT_EXPORT_BASE
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"mnist-train: cannot create {not_a_directory / 'mnist'} (Not a directory); "
        "pass --export-base DIR to a writable directory."
    )
    assert "Epoch" not in result.stdout  # refused before any training

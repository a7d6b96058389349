"""MNIST loading: the sample loads and is hashed; anything else fails with one clear sentence."""

import hashlib
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.utils.environment import REPO_ROOT, SAMPLE_PATH
from training.cli import EXIT_DATA
from training.data import DataError, load_mnist, load_npz, to_model_input


def _save(path, **overrides):
    with np.load(SAMPLE_PATH) as sample:
        arrays = {key: sample[key] for key in sample.files}
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return path


def test_load_npz_reads_the_sample_with_its_checksum():
    data = load_npz(SAMPLE_PATH)
    assert data.sizes == (2000, 1000)
    assert data.x_train.dtype == np.uint8
    assert data.x_train.shape[1:] == (28, 28)
    assert set(np.unique(data.y_train)) == set(range(10))
    assert data.sha256 == hashlib.sha256(SAMPLE_PATH.read_bytes()).hexdigest()


def test_to_model_input_scales_to_the_contract():
    data = load_npz(SAMPLE_PATH)
    x = to_model_input(data.x_test[:4])
    assert x.shape == (4, 28, 28, 1)
    assert x.dtype == np.float32
    assert 0.0 == x.min() < x.max() == 1.0


def test_missing_file_says_how_to_point_at_the_data(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; pass --data PATH"):
        load_mnist(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"x_train": np.zeros((10, 28, 27), np.uint8)}, "x_train has shape"),
        ({"x_test": np.zeros((1000, 28, 28), np.float64)}, "x_test has dtype float64"),
        ({"y_train": np.zeros(7, np.uint8)}, "y_train has shape"),
        ({"y_test": np.full(1000, 10, np.uint8)}, "y_test holds values outside 0..9"),
        ({"y_train": np.zeros(2000, np.float32)}, "y_train has dtype float32"),
        ({"x_test": None}, "lacks the arrays x_test"),
    ],
)
def test_wrong_arrays_are_refused_with_the_reason(tmp_path, overrides, complaint):
    path = _save(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError, match=complaint):
        load_npz(path)


def test_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "truncated.npz"
    path.write_bytes(SAMPLE_PATH.read_bytes()[:5000])
    with pytest.raises(DataError, match="is not a readable npz file"):
        load_npz(path)


def test_text_file_posing_as_npz_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_text("not an archive\n")
    with pytest.raises(DataError, match="is not a readable npz file"):
        load_npz(path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_cli(*args, env_overrides=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "MNIST_NPZ"}
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _last_stderr_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_cli_with_missing_file_exits_cleanly_with_one_sentence(tmp_path):
    result = _run_cli("--data", str(tmp_path / "missing.npz"), "--export-base", str(tmp_path))
    assert result.returncode == EXIT_DATA
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"mnist-train: MNIST file {tmp_path / 'missing.npz'} does not exist; pass --data PATH "
        "to a local mnist.npz in the Keras layout (or set MNIST_NPZ)."
    ]
    assert not (tmp_path / "mnist").exists()


def test_cli_with_malformed_npz_exits_cleanly(tmp_path):
    path = _save(tmp_path / "bad.npz", y_test=np.full(1000, 42, np.uint8))
    result = _run_cli("--data", str(path), "--export-base", str(tmp_path))
    assert result.returncode == EXIT_DATA
    assert "Traceback" not in result.stderr
    assert "y_test holds values outside 0..9" in _last_stderr_line(result)


def test_cli_reads_mnist_npz_from_the_environment(tmp_path):
    result = _run_cli(
        "--export-base", str(tmp_path), env_overrides={"MNIST_NPZ": str(tmp_path / "env.npz")}
    )
    assert result.returncode == EXIT_DATA
    assert f"{tmp_path / 'env.npz'} does not exist" in _last_stderr_line(result)


def test_cli_without_data_or_network_says_what_to_do(tmp_path):
    # No MNIST_NPZ, an empty Keras cache and a proxy on a closed port: the download fails
    # at once, as it does on a machine without network access.
    proxy = f"http://127.0.0.1:{_closed_port()}"
    result = _run_cli(
        "--export-base",
        str(tmp_path),
        env_overrides={
            "KERAS_HOME": str(tmp_path / "keras"),
            "http_proxy": proxy,
            "https_proxy": proxy,
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "no_proxy": "",
            "NO_PROXY": "",
        },
    )
    assert result.returncode == EXIT_DATA
    assert "Traceback" not in result.stderr
    assert _last_stderr_line(result).startswith("mnist-train: MNIST could not be downloaded")
    assert "pass --data PATH" in _last_stderr_line(result)

"""`mnist-client` and `Client` against a real gateway on localhost (tiny SavedModel)."""

import json
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest

from client.api import (
    Client,
    Failure,
    Prediction,
    RequestRejected,
    ServerUnavailable,
    collect_sources,
)
from client.cli import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    main,
)
from client.payloads import png_bytes


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory, mnist_sample):
    """40 MNIST test digits as PNG files, named so that sorting keeps their order."""
    folder = tmp_path_factory.mktemp("digits")
    for index, image in enumerate(mnist_sample["x_test"][:40]):
        (folder / f"{index:03d}.png").write_bytes(png_bytes(image))
    return folder


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_human_output_shows_digit_confidence_and_a_probability_bar(gateway, digit_files, capsys):
    code, out, err = run_cli(capsys, str(digit_files / "000.png"), "--url", gateway.url)

    assert code == EXIT_OK, err
    filename, digit, confidence, bar = out.split()
    assert filename == str(digit_files / "000.png")
    assert digit in "0123456789"
    assert confidence.endswith("%")
    assert 10.0 <= float(confidence[:-1]) <= 100.0
    assert bar.startswith("0")
    assert bar.endswith("9")
    assert len(bar) == 12


def test_predictions_say_whether_each_image_is_a_digit_with_the_models_score(
    gateway, digit_files, capsys
):
    with Client(gateway.url) as client:
        [prediction] = client.predict([digit_files / "000.png"])
    code, out, _ = run_cli(capsys, str(digit_files / "000.png"), "--url", gateway.url, "--json")

    assert prediction.is_digit is True  # a clear test digit, the default threshold
    assert prediction.digit_score is not None
    assert 0.5 <= prediction.digit_score <= 1
    assert code == EXIT_OK
    line = json.loads(out)
    assert (line["is_digit"], line["digit_score"]) == (True, prediction.digit_score)


@pytest.fixture(scope="module")
def scored_below_one(gateway, digit_files) -> list:
    """Files whose digit_score is under 1: a threshold of 1 judges them not digits."""
    with Client(gateway.url) as client:
        predictions = client.predict([digit_files])
    below = [p for p in predictions if p.digit_score is not None and p.digit_score < 1]
    assert len(below) >= 2
    return below


def test_an_image_judged_not_a_digit_is_said_so_with_its_score(
    launch_gateway, tiny_model_base, scored_below_one, capsys
):
    strict = launch_gateway(tiny_model_base / "mnist", digit_threshold="1.0")
    strict.wait_ready()
    files = [p.filename for p in scored_below_one[:2]]

    code, out, err = run_cli(capsys, *files, "--url", strict.url)
    assert code == EXIT_OK, err  # an answer, not an error: the exit code says so
    assert out.splitlines() == [
        f"{p.filename}  not a digit (score {p.digit_score:.2f})" for p in scored_below_one[:2]
    ]

    code, out, _ = run_cli(capsys, *files, "--url", strict.url, "--json")
    assert code == EXIT_OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["is_digit"], line["digit_score"]) for line in lines] == [
        (False, p.digit_score) for p in scored_below_one[:2]
    ]
    # The likeliest digit and the probabilities still pass through.
    assert [line["digit"] for line in lines] == [p.digit for p in scored_below_one[:2]]

    with Client(strict.url) as client:
        predictions = client.predict(files)
    assert [(p.is_digit, p.digit_score) for p in predictions] == [
        (False, p.digit_score) for p in scored_below_one[:2]
    ]


def test_json_output_is_one_object_per_image_in_input_order(gateway, digit_files, capsys):
    files = [str(digit_files / name) for name in ("003.png", "001.png", "002.png")]
    code, out, _ = run_cli(capsys, *files, "--url", gateway.url, "--json")

    assert code == EXIT_OK
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["filename"] for line in lines] == files
    for line in lines:
        assert line["digit"] == int(np.argmax(line["probabilities"]))
        assert abs(sum(line["probabilities"]) - 1) < 1e-3
        assert line["model"] == {"name": "mnist", "version": "1"}


def test_predictions_match_the_gateway_for_each_file_sent_alone(gateway, digit_files):
    with Client(gateway.url) as client:
        together = client.predict([digit_files])
        alone = [client.predict([digit_files / f"{i:03d}.png"])[0] for i in (0, 17, 39)]

    assert len(together) == 40
    for index, single in zip((0, 17, 39), alone, strict=True):
        assert together[index].filename == single.filename
        assert together[index].digit == single.digit
        np.testing.assert_allclose(together[index].probabilities, single.probabilities, atol=1e-5)


def test_most_digits_of_the_sample_are_recognised(gateway, digit_files, mnist_sample):
    with Client(gateway.url) as client:
        predictions = client.predict([digit_files])
    digits = np.array([p.digit for p in predictions])
    assert np.mean(digits == mnist_sample["y_test"][:40]) >= 0.7


def test_many_files_go_in_few_requests_within_the_server_limit(gateway, digit_files):
    # The gateway reports its limit (16 here) in GET /v1/models.
    with Client(gateway.url, concurrency=1) as client:
        predictions = client.predict([digit_files])
        assert client.max_files_per_request() == 16
        assert client.requests_sent == 1 + 3  # the GET, then ceil(40 / 16)

    # A client told a larger chunk than the server takes: each 32-file chunk is refused
    # with 413 and split in two.
    with Client(gateway.url, max_files_per_request=32) as client:
        assert len(client.predict([digit_files])) == 40
        assert client.requests_sent == 3 + 1  # 32 -> (refused, 16, 16), then 8

    assert [p.filename for p in predictions] == sorted(p.filename for p in predictions)
    assert len(predictions) == 40


def test_a_directory_gives_its_images_sorted(gateway, digit_files, tmp_path, capsys):
    (tmp_path / "b.png").write_bytes((digit_files / "001.png").read_bytes())
    (tmp_path / "a.png").write_bytes((digit_files / "000.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not an image, not picked up")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.png").write_bytes((digit_files / "002.png").read_bytes())

    code, out, _ = run_cli(capsys, str(tmp_path), "--url", gateway.url, "--json")
    assert code == EXIT_OK
    assert [json.loads(line)["filename"] for line in out.splitlines()] == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
    ]

    code, out, _ = run_cli(capsys, str(tmp_path), "-r", "--url", gateway.url, "--json")
    assert code == EXIT_OK
    assert len(out.splitlines()) == 3


def test_dash_reads_the_image_from_stdin(gateway, digit_files):
    image = (digit_files / "005.png").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "predict", "-", "--url", gateway.url, "--json"],
        input=image,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr.decode()
    answer = json.loads(result.stdout)
    assert answer["filename"] == "-"
    with Client(gateway.url) as client:
        assert answer["digit"] == client.predict([digit_files / "005.png"])[0].digit


def test_usage_errors_exit_2(capsys):
    for argv in (
        [],
        ["predict"],
        ["predict", "a.png", "--timeout", "0"],
        ["predict", "a.png", "--url", "ftp://example"],
        ["predict", "-", "-"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == EXIT_USAGE, argv
    assert "usage: mnist-client" in capsys.readouterr().err


def test_an_unreadable_file_exits_3_and_the_others_are_still_predicted(
    gateway, digit_files, tmp_path, capsys
):
    missing = tmp_path / "missing.png"
    code, out, err = run_cli(
        capsys,
        str(digit_files / "000.png"),
        str(missing),
        str(digit_files / "001.png"),
        "--url",
        gateway.url,
    )
    assert code == EXIT_UNREADABLE
    assert len(out.splitlines()) == 2
    assert f"{missing}: cannot read" in err


def test_an_image_the_server_rejects_exits_4_and_the_others_are_still_predicted(
    gateway, digit_files, tmp_path, capsys
):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"definitely not a PNG")
    files = [str(digit_files / f"{i:03d}.png") for i in range(5)]
    files.insert(3, str(bad))

    code, out, err = run_cli(capsys, *files, "--url", gateway.url, "--json")

    assert code == EXIT_REJECTED
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["filename"] for line in lines] == files
    assert lines[3]["error"]["status"] == 400
    assert lines[3]["error"]["code"] == "bad_image"
    assert all("digit" in line for index, line in enumerate(lines) if index != 3)
    assert err == ""


def test_rejection_wins_over_an_unreadable_file_and_is_reported_to_stderr(
    gateway, tmp_path, capsys
):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    code, _, err = run_cli(capsys, str(bad), str(tmp_path / "missing.png"), "--url", gateway.url)
    assert code == EXIT_REJECTED
    assert "rejected (400 bad_image)" in err


def test_no_server_exits_5_quickly(digit_files, dead_url, capsys):
    code, out, err = run_cli(
        capsys, str(digit_files / "000.png"), "--url", dead_url, "--retries", "0"
    )
    assert code == EXIT_UNAVAILABLE
    assert out == ""
    assert "server unavailable: cannot connect" in err


def test_the_api_raises_typed_errors(gateway, digit_files, tmp_path, dead_url):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a but truncated")
    with Client(gateway.url) as client, pytest.raises(RequestRejected) as rejected:
        client.predict([digit_files / "000.png", bad])
    assert rejected.value.status == 400
    assert rejected.value.filename == str(bad)

    with Client(dead_url, retries=1, backoff=0.01) as client, pytest.raises(ServerUnavailable):
        client.predict([digit_files / "000.png"])
    assert client.requests_sent == 1 + 2  # the GET for limits, then 2 tries


def test_503_is_retried_after_retry_after_until_a_model_is_loaded(
    launch_gateway, empty_model_base, publish_model, digit_files, caplog
):
    gateway = launch_gateway(empty_model_base, model_poll_seconds="0.2")
    retrying = threading.Event()

    class RetryWatcher(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retrying.set()

    watcher = RetryWatcher()
    logging.getLogger("client.api").addHandler(watcher)
    try:
        with Client(gateway.url, retries=20) as client:
            results: list = []
            worker = threading.Thread(
                target=lambda: results.extend(client.predict_all(_sources(digit_files, 3)))
            )
            caplog.set_level(logging.INFO, logger="client.api")
            worker.start()
            assert retrying.wait(60), "the client never saw a 503"
            publish_model(empty_model_base)
            worker.join(60)
        assert not worker.is_alive()
        assert all(isinstance(result, Prediction) for result in results), results
        assert len(results) == 3
        assert client.requests_sent >= 2
        assert any("in 1.0s" in message for message in caplog.messages)  # Retry-After: 1
    finally:
        logging.getLogger("client.api").removeHandler(watcher)


def test_503_retries_are_bounded(launch_gateway, empty_model_base, digit_files):
    gateway = launch_gateway(empty_model_base)
    with Client(gateway.url, retries=1, max_retry_wait=0.05) as client:
        with pytest.raises(ServerUnavailable, match="503"):
            list(client.predict_all(_sources(digit_files, 2)))
        assert client.requests_sent == 1 + 2  # the GET for limits, then 2 tries


def _sources(folder, count):
    return collect_sources([folder / f"{i:03d}.png" for i in range(count)])


def test_failures_are_collected_not_raised_by_predict_all(gateway, digit_files, tmp_path):
    with Client(gateway.url) as client:
        results = list(
            client.predict_all(_sources(digit_files, 2) + collect_sources([tmp_path / "nope.png"]))
        )
    assert [type(result) for result in results] == [Prediction, Prediction, Failure]

"""`mnist-client read` and `Client.read` against a real gateway on localhost (tiny model)."""

import json

import httpx
import pytest
from PIL import Image

from client.api import Client, Failure, Reading, RequestRejected, collect_sources
from client.cli import EXIT_OK, EXIT_REJECTED, main
from client.payloads import compose_number
from tests.utils.imagefiles import encode


@pytest.fixture(scope="module")
def number_files(tmp_path_factory, mnist_sample):
    """Three written numbers of 2, 3 and 4 sample digits as PNG files."""
    folder = tmp_path_factory.mktemp("numbers")
    digits = mnist_sample["x_test"]
    for index, count in enumerate((2, 3, 4)):
        number = compose_number(list(digits[10 * index : 10 * index + count]))
        (folder / f"{index}.png").write_bytes(encode(Image.fromarray(number.image)))
    return folder


def test_readings_are_what_the_gateway_answers_in_input_order(gateway, number_files):
    files = sorted(number_files.iterdir())
    with Client(gateway.url) as client:
        readings = client.read([number_files])
    assert [reading.filename for reading in readings] == [str(path) for path in files]
    for path, reading in zip(files, readings, strict=True):
        direct = httpx.post(
            f"{gateway.url}/v1/read", files={"file": (path.name, path.read_bytes())}
        )
        (expected,) = direct.json()["readings"]
        assert isinstance(reading, Reading)
        assert reading.text == expected["text"]
        assert reading.confidence == expected["confidence"]
        assert [d.box for d in reading.digits] == [
            tuple(d["box"][key] for key in ("x", "y", "width", "height"))
            for d in expected["digits"]
        ]
        assert [d.is_digit for d in reading.digits] == [d["is_digit"] for d in expected["digits"]]
        assert reading.model_version == "1"
    assert [len(reading.digits) for reading in readings] == [2, 3, 4]


def test_the_cli_prints_each_reading_and_json_on_request(gateway, number_files, capsys):
    paths = [str(path) for path in sorted(number_files.iterdir())]
    code = main(["read", *paths, "--url", gateway.url, "--no-progress"])
    out = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert [line.split()[0] for line in out] == paths
    code = main(["read", *paths, "--url", gateway.url, "--json", "--no-progress"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_OK
    assert [line["filename"] for line in lines] == paths
    assert [len(line["digits"]) for line in lines] == [2, 3, 4]
    for line in lines:
        assert line["text"] == "".join(str(d["digit"]) for d in line["digits"] if d["is_digit"])
        assert set(line["digits"][0]["box"]) == {"x", "y", "width", "height"}
        assert line["model"]["version"] == "1"


def test_an_image_the_server_refuses_exits_4_and_the_others_are_still_read(
    gateway, number_files, tmp_path, capsys
):
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode(Image.new("L", (80, 40), 255)))
    good = str(sorted(number_files.iterdir())[0])
    code = main(["read", good, str(blank), "--url", gateway.url, "--no-progress"])
    captured = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert captured.out.split()[0] == good
    assert "no_ink" in captured.err
    with Client(gateway.url) as client:
        results = list(client.read_all(collect_sources([good, str(blank)])))
    assert [type(result) for result in results] == [Reading, Failure]
    assert isinstance(results[1].error, RequestRejected)
    assert results[1].error.code == "no_ink"

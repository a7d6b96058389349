"""The drawing page at the HTTP level: what `GET /` and its assets answer, and that the
page ships inside the package (a non-editable install, as in the Docker image, has it)."""

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from fastapi.testclient import TestClient

from serving.api.routes.page import ASSETS, STATIC_DIR
from serving.app import create_app
from serving.settings import Settings
from tests.utils.environment import REPO_ROOT


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # The page needs no model: an empty model directory keeps this fast.
    settings = Settings(model_base_path=tmp_path_factory.mktemp("no-model"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_root_serves_the_page_under_a_same_origin_content_security_policy(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<canvas" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_asset_the_page_references_is_served_with_its_media_type(client):
    page = client.get("/").text
    referenced = set(re.findall(r'(?:src|href)="static/([^"]+)"', page))

    assert referenced == set(ASSETS)
    for name in referenced:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == ASSETS[name]
        assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/unknown.js",
        "/static/index.html",  # served at / only
        "/static/..%2Froutes%2Fpage.py",
        "/static/%2E%2E/settings.py",
    ],
)
def test_paths_outside_the_asset_list_answer_404_in_the_error_shape(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_page_is_not_part_of_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]

    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_built_wheel_ships_the_page(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for package in ("contract", "training", "serving", "client"):
        shutil.copytree(
            REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    # Without setuptools in this environment, pip builds in isolation (as `make` does).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation]
    subprocess.run(
        [*build, str(source), "--wheel-dir", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")

    shipped = set(zipfile.ZipFile(wheel).namelist())
    for path in STATIC_DIR.iterdir():
        assert f"serving/api/static/{path.name}" in shipped

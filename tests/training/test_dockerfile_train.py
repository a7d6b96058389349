"""Dockerfile.train, as a file: the linter and its instructions (tests/images builds it)."""

import re

from tests.utils.dockerfiles import hadolint_findings, instructions
from tests.utils.environment import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile.train"


def _instructions() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)


def test_dockerfile_train_is_hadolint_clean():
    assert hadolint_findings(DOCKERFILE) == ""


def test_dockerfile_train_defaults_to_a_pinned_gpu_tensorflow_base():
    (base,) = [value for op, value in _instructions() if op == "FROM"]
    assert base == "${BASE_IMAGE}"
    text = DOCKERFILE.read_text()
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    image, _, tag = default.partition(":")
    assert image == "tensorflow/tensorflow"
    assert re.fullmatch(r"2\.21\.\d+-gpu", tag), tag
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ")


def test_dockerfile_train_runs_the_training_cli_as_a_non_root_user():
    instructions = _instructions()
    users = [value for op, value in instructions if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoint = [value for op, value in instructions if op == "ENTRYPOINT"]
    assert entrypoint
    assert entrypoint[-1].startswith('["mnist-train"')
    # USER comes before ENTRYPOINT, so the job never runs as root.
    ops = [op for op, _ in instructions]
    assert max(i for i, op in enumerate(ops) if op == "USER") < ops.index("ENTRYPOINT")


def test_dockerfile_train_installs_only_the_train_extra():
    installs = [value for op, value in _instructions() if op == "RUN" and "pip install" in value]
    assert len(installs) == 1
    assert "[train]" in installs[0]
    for other in ("[serve", "[client", "[dev", ",serve", ",client", ",dev"):
        assert other not in installs[0]
    copied = [value.split()[0] for op, value in _instructions() if op == "COPY"]
    assert not any(path.startswith(("client", "tests")) for path in copied)
    # The negatives go through the gateway's own preprocessing (training/negatives.py).
    assert "serving/" in copied


def test_dockerignore_keeps_secrets_and_artefacts_out_of_the_context():
    patterns = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv*", "models", "runs", "data/*.npz"} <= patterns
    # What Dockerfile.train copies must stay in the context.
    for op, value in _instructions():
        if op == "COPY":
            for source in value.split()[:-1]:
                assert source.rstrip("/") not in patterns

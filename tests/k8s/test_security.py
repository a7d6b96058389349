"""Pod security on every workload, and a checkov scan of the manifests and Dockerfiles.

checkov pins dependencies that clash with the project's (packaging, termcolor...), so
it lives in its own venv, .venv-checkov, which `make test` builds (`make checkov`).
Its open-source edition reports no severities (they come from a Prisma Cloud key), so
the bar here is stricter than "no HIGH failures": no failed check at all, and every
suppression carries its reason inline (checkov.io/skipN annotations in k8s/,
`# checkov:skip=ID:reason` comments in Dockerfiles).
"""

import json
import shutil
import subprocess

import pytest
import yaml

from tests.k8s.manifests import (
    NAMESPACE,
    OVERLAYS,
    all_containers,
    find,
    pod_spec,
    workloads,
)
from tests.utils.environment import REPO_ROOT, require_tool

DOCKERFILES = ("Dockerfile.train", "Dockerfile.serve")
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"

# The volume types the "restricted" Pod Security Standard admits.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

# A pod that breaks every rule: the scan must fail it, or it proves nothing.
INSECURE_CONTROL = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "insecure-control", "namespace": "default"},
    "spec": {
        "containers": [
            {
                "name": "control",
                "image": "busybox:latest",
                "securityContext": {"privileged": True, "allowPrivilegeEscalation": True},
            }
        ]
    },
}
CONTROL_MUST_FAIL = {
    "CKV_K8S_16",  # privileged
    "CKV_K8S_20",  # allowPrivilegeEscalation
    "CKV_K8S_22",  # readOnlyRootFilesystem
    "CKV_K8S_23",  # runAsNonRoot
    "CKV_K8S_28",  # NET_RAW not dropped
    "CKV_K8S_31",  # seccomp
    "CKV_K8S_37",  # capabilities not dropped
    "CKV_K8S_38",  # service account token
    "CKV_K8S_14",  # :latest
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_under_the_restricted_pod_security_standard(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec.get("serviceAccountName", "default") != "default", name
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host_namespace), f"{name}: {host_namespace}"
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"{name}: volume {volume['name']} {kinds}"
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] >= 10000, f"{name}: a UID no host account uses"
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in all_containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security.get("privileged", False) is False, where
            assert not any("hostPort" in port for port in container.get("ports", [])), where
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{where}: {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_accounts_mount_no_token(rendered, overlay):
    manifests = rendered[overlay]
    for workload in workloads(manifests):
        account = find(manifests, "ServiceAccount", pod_spec(workload)["serviceAccountName"])
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_the_restricted_pod_security_standard(rendered, overlay):
    labels = find(rendered[overlay], "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def checkov_path() -> str:
    own = CHECKOV_VENV / "bin" / "checkov"
    return str(own) if own.exists() else require_tool("checkov")


@pytest.fixture(scope="module")
def checkov_results(tmp_path_factory, rendered):
    """One checkov run over every overlay, both Dockerfiles and the insecure control."""
    checkov = checkov_path()
    scan = tmp_path_factory.mktemp("checkov")
    for overlay, manifests in rendered.items():
        (scan / f"{overlay}.yaml").write_text(yaml.safe_dump_all(manifests))
    for dockerfile in DOCKERFILES:
        source = REPO_ROOT / dockerfile
        assert source.is_file(), f"{dockerfile} does not exist"
        shutil.copyfile(source, scan / dockerfile)
    (scan / "control").mkdir()
    (scan / "control" / "insecure.yaml").write_text(yaml.safe_dump(INSECURE_CONTROL))

    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(scan),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--skip-download",  # no Prisma Cloud: nothing to fetch, works offline
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_framework = {report["check_type"]: report for report in reports}
    assert set(by_framework) == {"kubernetes", "dockerfile"}, set(by_framework)
    return by_framework


def checks(report, outcome):
    return report["results"].get(f"{outcome}_checks", [])


def is_control(check):
    return check["file_path"].startswith("/control/")


def test_checkov_fails_a_deliberately_insecure_pod(checkov_results):
    report = checkov_results["kubernetes"]
    failed = {c["check_id"] for c in checks(report, "failed") if is_control(c)}
    assert failed >= CONTROL_MUST_FAIL


def test_checkov_passes_every_rendered_manifest(checkov_results):
    report = checkov_results["kubernetes"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for c in checks(report, "failed")
        if not is_control(c)
    ]
    assert not failed, "\n".join(failed)
    scanned = {c["file_path"] for c in checks(report, "passed")}
    assert {f"/{overlay}.yaml" for overlay in OVERLAYS} <= scanned


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_checkov_passes_the_dockerfile(checkov_results, dockerfile):
    report = checkov_results["dockerfile"]
    failed = [
        f"{c['check_id']} {c['check_name']}"
        for c in checks(report, "failed")
        if c["file_path"] == f"/{dockerfile}"
    ]
    assert not failed, "\n".join(failed)
    assert any(c["file_path"] == f"/{dockerfile}" for c in checks(report, "passed"))


def test_every_checkov_suppression_states_its_reason(checkov_results):
    skipped = [
        check
        for report in checkov_results.values()
        for check in checks(report, "skipped")
        if not is_control(check)
    ]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']}: {reason!r}"

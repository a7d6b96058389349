"""Each overlay renders the whole application, and the overlays differ where they should."""

import shutil
import tomllib
from collections import Counter

import pytest

from tests.k8s.manifests import (
    NAMESPACE,
    OVERLAYS,
    all_containers,
    container,
    env_of,
    find,
    of_kind,
    pod_spec,
    render,
    workloads,
)
from tests.utils.environment import REPO_ROOT

EXPECTED_OBJECTS = Counter(
    {
        "Namespace": 1,
        "ServiceAccount": 3,
        "PersistentVolumeClaim": 1,
        "ConfigMap": 1,
        "Job": 1,
        "Deployment": 2,
        "Service": 3,
        "HorizontalPodAutoscaler": 2,
        "PodDisruptionBudget": 2,
        "NetworkPolicy": 3,
    }
)
CLUSTER_SCOPED = {"Namespace"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_application(rendered, overlay):
    kinds = Counter(m["kind"] for m in rendered[overlay])
    assert kinds == EXPECTED_OBJECTS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lives_in_the_application_namespace(rendered, overlay):
    for manifest in rendered[overlay]:
        if manifest["kind"] in CLUSTER_SCOPED:
            assert manifest["metadata"]["name"] == NAMESPACE
        else:
            assert manifest["metadata"].get("namespace") == NAMESPACE, manifest["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_to_the_project_version(rendered, overlay):
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for workload in workloads(rendered[overlay]):
        for spec in all_containers(workload):
            image = spec["image"]
            name, _, tag = image.rpartition(":")
            assert "/" in name, f"{image} has no tag"
            assert tag == project["version"], f"{image}: tag is not {project['version']}"


def test_gpu_overlay_trains_on_one_gpu_node(rendered):
    job = find(rendered["gpu"], "Job", "train-mnist")
    train = container(job, "train")
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert gpu_toleration in pod_spec(job)["tolerations"]
    assert "--profile=best" in train["args"]
    # Serving stays on CPU nodes: a GPU request there would strand the pods.
    for name in ("tfserving", "gateway"):
        deployment = find(rendered["gpu"], "Deployment", name)
        for spec in all_containers(deployment):
            assert "nvidia.com/gpu" not in spec["resources"].get("limits", {})
    assert find(rendered["gpu"], "PersistentVolumeClaim", "models")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def test_cpu_overlay_needs_no_gpu_and_fits_a_one_node_cluster(rendered):
    manifests = rendered["cpu"]
    job = find(manifests, "Job", "train-mnist")
    assert "nodeSelector" not in pod_spec(job)
    assert "--profile=fast" in container(job, "train")["args"]
    for workload in workloads(manifests):
        for spec in all_containers(workload):
            assert "nvidia.com/gpu" not in spec["resources"].get("limits", {})
            # Images loaded into a kind/minikube node exist in no registry.
            assert spec["imagePullPolicy"] == "IfNotPresent"
    pvc = find(manifests, "PersistentVolumeClaim", "models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_canary_overlay_differs_from_cpu_only_in_which_versions_answer(rendered):
    plain, canary = rendered["cpu"], rendered["cpu-canary"]
    assert [m for m in canary if m["kind"] != "Deployment"] == [
        m for m in plain if m["kind"] != "Deployment"
    ]

    def environment(manifests, deployment, container_name):
        spec = container(find(manifests, "Deployment", deployment), container_name)
        return {name: entry.get("value") for name, entry in env_of(spec).items()}

    server_plain = environment(plain, "tfserving", "model-server")
    server_canary = environment(canary, "tfserving", "model-server")
    assert server_plain["MODEL_CONFIG_FILE"] == "/etc/tfserving/models.config"
    assert server_canary == {
        **server_plain,
        "MODEL_CONFIG_FILE": "/etc/tfserving/models.canary.config",
    }

    gateway_plain = environment(plain, "gateway", "gateway")
    gateway_canary = environment(canary, "gateway", "gateway")
    assert gateway_canary == {**gateway_plain, "GATEWAY_TFSERVING_DEFAULT_LABEL": "stable"}


def test_changing_a_tf_serving_config_file_rolls_the_tf_serving_pods(kubectl, tmp_path):
    """The ConfigMap's name carries a hash of its content, and the Deployment refers to it
    by that name: an edited config file means a new pod template, so a rolling update
    (and `kubectl rollout undo` to go back)."""
    shutil.copytree(REPO_ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(REPO_ROOT / "serving" / "tfserving", tmp_path / "serving" / "tfserving")

    def config_map_names(manifests):
        (config_map,) = of_kind(manifests, "ConfigMap")
        volumes = pod_spec(find(manifests, "Deployment", "tfserving"))["volumes"]
        mounted = [v["configMap"]["name"] for v in volumes if "configMap" in v]
        return config_map["metadata"]["name"], mounted

    overlay = tmp_path / "k8s" / "overlays" / "cpu"
    before, mounted_before = config_map_names(render(kubectl, overlay))
    models_config = tmp_path / "serving" / "tfserving" / "models.config"
    models_config.write_text(models_config.read_text() + "\n# edited\n")
    after, mounted_after = config_map_names(render(kubectl, overlay))

    assert mounted_before == [before]
    assert mounted_after == [after]
    assert before != after

"""The names that tie the objects together, and to the rest of the repository, agree.

Each test reads the real file on the other side of a reference (the gateway's
Settings class, serving/tfserving/'s configs, the Dockerfiles, the model contract), so a
rename anywhere fails here instead of in a cluster.
"""

import math
import posixpath
import re

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from contract import MODEL_NAME
from tests.k8s.manifests import (
    OVERLAYS,
    all_containers,
    container,
    cpu_cores,
    env_of,
    find,
    labels_match,
    of_kind,
    pod_spec,
    read_repo_file,
    resolve_env,
    workloads,
)
from tests.utils.dockerfiles import exec_form, instructions, stages
from tests.utils.environment import REPO_ROOT
from tests.utils.gateway_setup import settings_from

TFSERVING_CONFIG_DIR = "serving/tfserving"
CONFIG_MOUNT = "/etc/tfserving"


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"]["labels"]


def container_ports(workload):
    """Every (name, number) a container of the pod declares."""
    return {
        (port.get("name"), port["containerPort"])
        for spec in workload["spec"]["template"]["spec"]["containers"]
        for port in spec.get("ports", [])
    }


def port_exists(workload, port):
    """A Service targetPort / probe port: a declared port name, or a declared number."""
    names = {name for name, _ in container_ports(workload)}
    numbers = {number for _, number in container_ports(workload)}
    return port in names if isinstance(port, str) else port in numbers


def selected_workloads(manifests, selector):
    return [w for w in workloads(manifests) if labels_match(selector, pod_labels(w))]


def flag_values(args):
    """--name=value flags of a command line, as a dict."""
    return dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)


def expand(text, environment):
    """Kubernetes' $(VAR) substitution in command arguments."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: environment[m.group(1)], text)


def model_server_flags(deployment):
    server = container(deployment, "model-server")
    environment = resolve_env(deployment, server)
    return flag_values(expand(arg, environment) for arg in server["args"])


def parse_model_server_config(name):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(read_repo_file(f"{TFSERVING_CONFIG_DIR}/{name}"), config)
    return config


def mounted_volume(workload, container_name, path):
    """The pod volume mounted at `path` in a container, and the mount itself."""
    mounts = container(workload, container_name)["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == path]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return volume, mount


def mount_for(workload, container_name, file_path):
    """The mount under which `file_path` lies (longest matching mount path)."""
    mounts = container(workload, container_name)["volumeMounts"]
    candidates = [
        m
        for m in mounts
        if file_path == m["mountPath"] or file_path.startswith(m["mountPath"] + "/")
    ]
    assert candidates, f"{file_path} is on no volume of {container_name}"
    return max(candidates, key=lambda m: len(m["mountPath"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_pods_that_declare_its_target_ports(rendered, overlay):
    manifests = rendered[overlay]
    for service in of_kind(manifests, "Service"):
        backends = selected_workloads(manifests, service["spec"]["selector"])
        assert backends, f"Service {service['metadata']['name']} selects no pods"
        for workload in backends:
            for port in service["spec"]["ports"]:
                assert port_exists(workload, port["targetPort"]), (
                    service["metadata"]["name"],
                    port,
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_probe_targets_a_port_its_container_declares(rendered, overlay):
    probes_seen = 0
    for workload in workloads(rendered[overlay]):
        for spec in workload["spec"]["template"]["spec"]["containers"]:
            declared = {p.get("name") for p in spec.get("ports", [])} | {
                p["containerPort"] for p in spec.get("ports", [])
            }
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = spec.get(kind)
                if probe is None:
                    continue
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                assert handler["port"] in declared, (workload["metadata"]["name"], kind)
                probes_seen += 1
    assert probes_seen == 6  # three on TF Serving, three on the gateway


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_probes_wait_for_a_loaded_model(rendered, overlay):
    server = container(find(rendered[overlay], "Deployment", "tfserving"), "model-server")
    metadata = {"path": f"/v1/models/{MODEL_NAME}/metadata", "port": "http"}
    assert server["startupProbe"]["httpGet"] == metadata
    assert server["readinessProbe"]["httpGet"] == metadata
    # TF Serving implements no grpc.health.v1: liveness is the gRPC port accepting.
    assert server["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert "grpc" not in server["livenessProbe"]
    assert {("grpc", 8500), ("http", 8501)} <= container_ports(
        find(rendered[overlay], "Deployment", "tfserving")
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_probes_its_health_endpoints(rendered, overlay):
    gateway = container(find(rendered[overlay], "Deployment", "gateway"), "gateway")
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_reads_only_config_files_the_config_map_holds(rendered, overlay):
    manifests = rendered[overlay]
    deployment = find(manifests, "Deployment", "tfserving")
    (config_map,) = of_kind(manifests, "ConfigMap")
    volume, mount = mounted_volume(deployment, "model-server", CONFIG_MOUNT)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert mount.get("readOnly") is True

    flags = model_server_flags(deployment)
    config_files = [
        flags["model_config_file"],
        flags["batching_parameters_file"],
        flags["monitoring_config_file"],
    ]
    for path in config_files:
        assert posixpath.dirname(path) == CONFIG_MOUNT
        assert posixpath.basename(path) in config_map["data"], path
    for item in volume["configMap"].get("items", []):
        assert item["key"] in config_map["data"]
    # One source of truth: the ConfigMap holds the files of serving/tfserving/ verbatim.
    for key, text in config_map["data"].items():
        assert text == read_repo_file(f"{TFSERVING_CONFIG_DIR}/{key}"), key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_training_job_writes_the_model_where_tf_serving_reads_it(rendered, overlay):
    manifests = rendered[overlay]
    job = find(manifests, "Job", "train-mnist")
    server_deployment = find(manifests, "Deployment", "tfserving")

    export_base = flag_values(container(job, "train")["args"])["export-base"]
    job_mount = mount_for(job, "train", export_base)
    (job_volume,) = [v for v in pod_spec(job)["volumes"] if v["name"] == job_mount["name"]]
    assert not job_mount.get("readOnly")
    model_dir = posixpath.join(export_base, MODEL_NAME)  # training.export.model_dir

    config_file = posixpath.basename(model_server_flags(server_deployment)["model_config_file"])
    for name in {config_file, "models.config", "models.canary.config"}:
        (model,) = parse_model_server_config(name).model_config_list.config
        assert model.name == MODEL_NAME
        assert model.base_path == model_dir, name
        assert model.model_platform == "tensorflow"

    for container_name in ("wait-for-model", "model-server"):
        mount = mount_for(server_deployment, container_name, model_dir)
        (volume,) = [
            v for v in pod_spec(server_deployment)["volumes"] if v["name"] == mount["name"]
        ]
        # The same claim, mounted at the same path, read-only on the serving side.
        claim = volume["persistentVolumeClaim"]
        assert claim["claimName"] == job_volume["persistentVolumeClaim"]["claimName"]
        assert mount["mountPath"] == job_mount["mountPath"]
        assert mount.get("readOnly") is True
        assert claim.get("readOnly") is True
    find(manifests, "PersistentVolumeClaim", job_volume["persistentVolumeClaim"]["claimName"])

    wait_command = " ".join(container(server_deployment, "wait-for-model")["command"])
    assert f"{model_dir}/[0-9]*/saved_model.pb" in wait_command


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_training_job_arguments_are_flags_the_trainer_accepts(rendered, overlay):
    """The image's ENTRYPOINT plus the Job's args, through the trainer's own parser."""
    from training.cli import build_parser

    job = find(rendered[overlay], "Job", "train-mnist")
    entrypoint = exec_form(instructions(REPO_ROOT / "Dockerfile.train"), "ENTRYPOINT")
    assert "command" not in container(job, "train"), "the image's ENTRYPOINT runs"
    args = build_parser().parse_args(entrypoint[1:] + container(job, "train")["args"])
    assert str(args.export_base) == flag_values(container(job, "train")["args"])["export-base"]
    assert args.min_accuracy == pytest.approx(0.99)
    # TensorBoard logs go to a writable volume (the root filesystem is read-only).
    mount_for(job, "train", str(args.logdir))


def test_canary_config_pins_two_versions_labelled_stable_and_canary():
    (model,) = parse_model_server_config("models.canary.config").model_config_list.config
    pinned = set(model.model_version_policy.specific.versions)
    assert set(model.version_labels) == {"stable", "canary"}
    assert set(model.version_labels.values()) <= pinned
    assert len(pinned) == 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_thread_pools_follow_the_container_cpu_limit(rendered, overlay):
    deployment = find(rendered[overlay], "Deployment", "tfserving")
    server = container(deployment, "model-server")
    cores = math.ceil(cpu_cores(server["resources"]["limits"]["cpu"]))
    flags = model_server_flags(deployment)
    batching = read_repo_file(f"{TFSERVING_CONFIG_DIR}/batching_parameters.txt")
    (batch_threads,) = re.findall(r"num_batch_threads\s*\{\s*value\s*:\s*(\d+)\s*\}", batching)
    assert int(batch_threads) == cores
    assert int(flags["tensorflow_intra_op_parallelism"]) == cores
    assert int(flags["tensorflow_inter_op_parallelism"]) == cores
    assert int(flags["rest_api_num_threads"]) == 4 * cores
    # The core count comes from the limit itself, not a number that could drift from it.
    cpu_limit = env_of(server)["CPU_LIMIT"]["valueFrom"]["resourceFieldRef"]
    assert cpu_limit == {"containerName": "model-server", "resource": "limits.cpu", "divisor": "1"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_runs_the_command_line_of_its_image(rendered, overlay):
    """Flag for flag the image's (and so the README's) command line, except what
    Kubernetes knows better: thread pools from the CPU limit, the config file (the
    canary component swaps it), and labels allowed on versions still loading."""
    stage = stages(REPO_ROOT / "Dockerfile.serve")["model-server"]
    deployment = find(rendered[overlay], "Deployment", "tfserving")
    server = container(deployment, "model-server")
    assert server["command"] == exec_form(stage, "ENTRYPOINT")

    image_flags = flag_values(exec_form(stage, "CMD"))
    k8s_flags = model_server_flags(deployment)
    sized_by_kubernetes = {
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "rest_api_num_threads",
        "model_config_file",
    }
    kubernetes_only = {"allow_version_labels_for_unavailable_models"}
    assert set(k8s_flags) == set(image_flags) | kubernetes_only
    for flag, value in image_flags.items():
        if flag not in sized_by_kubernetes:
            assert k8s_flags[flag] == value, flag
    assert posixpath.dirname(k8s_flags["model_config_file"]) == posixpath.dirname(
        image_flags["model_config_file"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_the_path_tf_serving_exports_metrics_on(rendered, overlay):
    deployment = find(rendered[overlay], "Deployment", "tfserving")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    monitoring = read_repo_file(f"{TFSERVING_CONFIG_DIR}/monitoring.config")
    assert re.search(r"enable\s*:\s*true", monitoring)
    (path,) = re.findall(r'path\s*:\s*"([^"]+)"', monitoring)
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == path
    assert ("http", int(annotations["prometheus.io/port"])) in container_ports(deployment)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_gateway_variable_is_a_valid_gateway_setting(rendered, overlay):
    deployment = find(rendered[overlay], "Deployment", "gateway")
    gateway = container(deployment, "gateway")
    environment = resolve_env(deployment, gateway)
    names = [name for name in environment if name.startswith("GATEWAY_")]
    assert names == list(environment), "only GATEWAY_ settings are set on the gateway"

    # The gateway's own loader: refuses unknown GATEWAY_ names and invalid values.
    settings = settings_from(environment)

    assert settings.backend == "grpc"
    assert settings.model_name == MODEL_NAME
    assert settings.host == "0.0.0.0"
    assert ("http", settings.port) in container_ports(deployment)
    assert settings.workers == math.ceil(cpu_cores(gateway["resources"]["limits"]["cpu"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_balances_grpc_over_every_tf_serving_pod(rendered, overlay):
    manifests = rendered[overlay]
    deployment = find(manifests, "Deployment", "gateway")
    settings = settings_from(resolve_env(deployment, container(deployment, "gateway")))

    match = re.fullmatch(r"dns:///([a-z0-9-]+):(\d+)", settings.tfserving_grpc_target)
    assert match, settings.tfserving_grpc_target
    service = find(manifests, "Service", match.group(1))
    assert service["spec"]["clusterIP"] == "None", "round_robin needs every pod's address"
    assert settings.tfserving_grpc_lb_policy == "round_robin"
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == int(match.group(2))]
    (tfserving,) = selected_workloads(manifests, service["spec"]["selector"])
    assert tfserving["metadata"]["name"] == "tfserving"
    assert port["targetPort"] == "grpc"

    rest = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", settings.tfserving_rest_url)
    assert rest, settings.tfserving_rest_url
    rest_service = find(manifests, "Service", rest.group(1))
    assert int(rest.group(2)) in {p["port"] for p in rest_service["spec"]["ports"]}
    assert selected_workloads(manifests, rest_service["spec"]["selector"]) == [tfserving]


def test_gateway_sends_batches_no_larger_than_tf_serving_accepts(rendered):
    batching = read_repo_file(f"{TFSERVING_CONFIG_DIR}/batching_parameters.txt")
    (max_batch_size,) = re.findall(r"max_batch_size\s*\{\s*value\s*:\s*(\d+)\s*\}", batching)
    for overlay in OVERLAYS:
        deployment = find(rendered[overlay], "Deployment", "gateway")
        settings = settings_from(resolve_env(deployment, container(deployment, "gateway")))
        assert settings.tfserving_max_batch_size == int(max_batch_size)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_come_from_build_targets_that_exist(rendered, overlay):
    for workload in workloads(rendered[overlay]):
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        build_stages = stages(REPO_ROOT / annotations["build.mnist-serving/dockerfile"])
        target = annotations.get("build.mnist-serving/target")
        if target is not None:
            assert target in build_stages, f"no stage {target!r} in {list(build_stages)}"
        image_name = workload["spec"]["template"]["spec"]["containers"][0]["image"]
        # README builds mnist-serving/<target> (the training image: mnist-serving/train).
        expected = target or "train"
        assert image_name.rpartition(":")[0].endswith(f"mnist-serving/{expected}")
        for spec in all_containers(workload):
            assert spec["image"] == image_name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_admits_only_the_gateway(rendered, overlay):
    manifests = rendered[overlay]
    policies = of_kind(manifests, "NetworkPolicy")
    tfserving = find(manifests, "Deployment", "tfserving")
    gateway = find(manifests, "Deployment", "gateway")

    # Everything not explicitly allowed is denied, for every pod of the namespace.
    assert any(
        p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
        for p in policies
        if "Ingress" in p["spec"]["policyTypes"]
    )
    applying = [
        p
        for p in policies
        if p["spec"]["podSelector"]
        and labels_match(p["spec"]["podSelector"]["matchLabels"], pod_labels(tfserving))
    ]
    assert applying
    for policy in applying:
        for rule in policy["spec"]["ingress"]:
            assert rule["from"], "a rule without `from` admits everyone"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, "only pods of this namespace"
                selector = peer["podSelector"]["matchLabels"]
                assert labels_match(selector, pod_labels(gateway))
                assert selected_workloads(manifests, selector) == [gateway]
            for port in rule["ports"]:
                assert port_exists(tfserving, port["port"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_is_reachable_on_its_service_port(rendered, overlay):
    manifests = rendered[overlay]
    gateway = find(manifests, "Deployment", "gateway")
    service = find(manifests, "Service", "gateway")
    admitted = {
        port["port"]
        for policy in of_kind(manifests, "NetworkPolicy")
        if policy["spec"]["podSelector"]
        and labels_match(policy["spec"]["podSelector"]["matchLabels"], pod_labels(gateway))
        for rule in policy["spec"].get("ingress", [])
        if "from" not in rule
        for port in rule["ports"]
    }
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= admitted


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_and_disruption_budgets_govern_existing_deployments(rendered, overlay):
    manifests = rendered[overlay]
    scaled = set()
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = find(manifests, target["kind"], target["name"])
        assert target["apiVersion"] == deployment["apiVersion"]
        # A replicas field would reset the autoscaler's count on every apply.
        assert "replicas" not in deployment["spec"]
        # CPU utilisation is measured against requests: every container needs one.
        for spec in all_containers(deployment):
            assert "cpu" in spec["resources"]["requests"]
        assert hpa["spec"]["minReplicas"] >= 2, "one replica cannot survive a drain"
        scaled.add(target["name"])
    assert scaled == {"tfserving", "gateway"}

    budgeted = set()
    for pdb in of_kind(manifests, "PodDisruptionBudget"):
        (workload,) = selected_workloads(manifests, pdb["spec"]["selector"]["matchLabels"])
        budgeted.add(workload["metadata"]["name"])
    assert budgeted == {"tfserving", "gateway"}

"""serving/tfserving/, Dockerfile.serve and the README's server command line agree.

No Docker engine and no TF Serving binary here: the files are kept honest by parsing
them, by hadolint, and by checking every cross-reference between them.
"""

import re
import shlex
import tomllib

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from contract import MODEL_NAME
from serving.settings import Settings
from tests.utils.dockerfiles import exec_form, hadolint_findings
from tests.utils.dockerfiles import stages as dockerfile_stages
from tests.utils.environment import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "serving" / "tfserving"
DOCKERFILE = REPO_ROOT / "Dockerfile.serve"
README = REPO_ROOT / "README.md"
MOUNTED_CONFIG_DIR = "/etc/tfserving/"


def stages() -> dict[str, list[tuple[str, str]]]:
    return dockerfile_stages(DOCKERFILE)


def flags(arguments: list[str]) -> dict[str, str]:
    assert all(arg.startswith("--") and "=" in arg for arg in arguments), arguments
    return dict(arg[2:].split("=", 1) for arg in arguments)


def dockerfile_server_flags() -> dict[str, str]:
    model_server = stages()["model-server"]
    assert exec_form(model_server, "ENTRYPOINT") == ["tensorflow_model_server"]
    return flags(exec_form(model_server, "CMD"))


def readme_server_flags() -> dict[str, str]:
    blocks = re.findall(r"```sh\n(tensorflow_model_server .*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README shows one tensorflow_model_server command line"
    words = shlex.split(blocks[0].replace("\\\n", " "))
    return flags(words[1:])


def test_dockerfile_serve_is_hadolint_clean():
    assert hadolint_findings(DOCKERFILE) == ""


def test_dockerfile_serve_has_the_model_server_and_gateway_targets():
    found = stages()
    assert {"model-server", "model-server-with-model", "gateway"} <= set(found)

    model_server_base = found["model-server"][0][1].split()[0]
    image, _, tag = model_server_base.partition(":")
    assert image == "tensorflow/serving"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin an exact TF Serving release, not {tag!r}"
    copies = [v for op, v in found["model-server"] if op == "COPY"]
    assert copies == [f"serving/tfserving/ {MOUNTED_CONFIG_DIR}"]

    gateway = found["gateway"]
    assert gateway[0][1].split()[0].startswith("python:3.11-slim")
    users = [v for op, v in gateway if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    ops = [op for op, _ in gateway]
    assert ops.index("USER") < ops.index("CMD")
    assert [v for op, v in gateway if op == "CMD"] == ['["python", "-m", "serving"]']
    assert any("GATEWAY_HOST=0.0.0.0" in v for op, v in gateway if op == "ENV")
    (healthcheck,) = [v for op, v in gateway if op == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck  # the slim image has none


def test_gateway_image_installs_only_the_gateway_extra():
    installs = [v for op, v in stages()["gateway-build"] if op == "RUN" and "pip install" in v]
    assert len(installs) == 1
    assert re.search(r'"/src\[gateway\]"', installs[0])
    for other in ("serve", "embedded", "tensorflow", "train", "client", "dev"):
        assert other not in installs[0]
    copied = [v.split()[0] for op, v in stages()["gateway-build"] if op == "COPY"]
    assert not any(path.startswith(("training", "client", "tests")) for path in copied)


def test_tfserving_release_matches_the_tensorflow_that_exports_models():
    tag = stages()["model-server"][0][1].split()[0].partition(":")[2]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (pin,) = [
        d for d in pyproject["project"]["optional-dependencies"]["train"] if "tensorflow>" in d
    ]
    minor = re.search(r">=(\d+\.\d+)", pin).group(1)
    assert tag.startswith(minor + "."), f"TF Serving {tag} vs training's {pin}"


def test_readme_command_line_is_the_one_the_image_runs():
    assert readme_server_flags() == dockerfile_server_flags()


def test_server_flags_name_existing_config_files_and_every_config_is_used():
    server = dockerfile_server_flags()
    assert server["port"] == "8500"
    assert server["rest_api_port"] == "8501"
    assert server["enable_batching"] == "true"
    named = {
        value.removeprefix(MOUNTED_CONFIG_DIR)
        for key, value in server.items()
        if key.endswith("_file")
    }
    for name in named:
        assert (CONFIG_DIR / name).is_file(), f"--*_file names {name}, missing in serving/tfserving"
    assert named == {"models.config", "batching_parameters.txt", "monitoring.config"}
    assert int(server["model_config_file_poll_wait_seconds"]) > 0
    assert int(server["file_system_poll_wait_seconds"]) > 0
    # The canary variant is documented with the same flag.
    assert f"--model_config_file={MOUNTED_CONFIG_DIR}models.canary.config" in README.read_text()


# Text-format schemas transcribed from the fields TF Serving documents for these files
# (ModelServerConfig, MonitoringConfig, BatchingParameters): they catch a misspelt or
# misplaced field; they are not the server's own parser.
def _schemas():
    file = descriptor_pb2.FileDescriptorProto(name="tfserving_config_test.proto", package="t")
    file.dependency.append("google/protobuf/wrappers.proto")
    fdp = descriptor_pb2.FieldDescriptorProto
    optional, repeated = fdp.LABEL_OPTIONAL, fdp.LABEL_REPEATED

    def message(name, fields, parent=None):
        proto = (parent.nested_type if parent else file.message_type).add(name=name)
        for number, (field_name, field_type, label, type_name) in enumerate(fields, start=1):
            field = proto.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
        return proto

    msg, string, int64, uint32, boolean = (
        fdp.TYPE_MESSAGE,
        fdp.TYPE_STRING,
        fdp.TYPE_INT64,
        fdp.TYPE_UINT32,
        fdp.TYPE_BOOL,
    )
    message("Latest", [("num_versions", uint32, optional, None)])
    message("All", [])
    message("Specific", [("versions", int64, repeated, None)])
    message(
        "VersionPolicy",
        [
            ("latest", msg, optional, ".t.Latest"),
            ("all", msg, optional, ".t.All"),
            ("specific", msg, optional, ".t.Specific"),
        ],
    )
    model = message(
        "ModelConfig",
        [
            ("name", string, optional, None),
            ("base_path", string, optional, None),
            ("model_platform", string, optional, None),
            ("model_version_policy", msg, optional, ".t.VersionPolicy"),
            ("version_labels", msg, repeated, ".t.ModelConfig.VersionLabelsEntry"),
        ],
    )
    entry = message(
        "VersionLabelsEntry",
        [("key", string, optional, None), ("value", int64, optional, None)],
        parent=model,
    )
    entry.options.map_entry = True
    message("ModelConfigList", [("config", msg, repeated, ".t.ModelConfig")])
    message("ModelServerConfig", [("model_config_list", msg, optional, ".t.ModelConfigList")])
    message(
        "PrometheusConfig", [("enable", boolean, optional, None), ("path", string, optional, None)]
    )
    message("MonitoringConfig", [("prometheus_config", msg, optional, ".t.PrometheusConfig")])
    int64_value = ".google.protobuf.Int64Value"
    message(
        "BatchingParameters",
        [
            ("max_batch_size", msg, optional, int64_value),
            ("batch_timeout_micros", msg, optional, int64_value),
            ("max_enqueued_batches", msg, optional, int64_value),
            ("num_batch_threads", msg, optional, int64_value),
            ("thread_pool_name", msg, optional, ".google.protobuf.StringValue"),
            ("allowed_batch_sizes", int64, repeated, None),
            ("pad_variable_length_inputs", boolean, optional, None),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import wrappers_pb2

    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t.{name}"))
        for name in ("ModelServerConfig", "MonitoringConfig", "BatchingParameters")
    }


def parse(kind: str, file_name: str):
    return text_format.Parse((CONFIG_DIR / file_name).read_text(), _schemas()[kind]())


def test_models_config_serves_the_contract_model_with_the_latest_policy():
    config = parse("ModelServerConfig", "models.config")
    (model,) = config.model_config_list.config
    assert model.name == MODEL_NAME == Settings().model_name
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.HasField("latest")
    assert model.model_version_policy.latest.num_versions == 1
    assert not model.version_labels


def test_canary_config_labels_point_at_pinned_versions():
    (model,) = parse("ModelServerConfig", "models.canary.config").model_config_list.config
    assert model.name == MODEL_NAME
    pinned = set(model.model_version_policy.specific.versions)
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    assert set(model.version_labels.values()) <= pinned
    assert set(Settings().tfserving_version_labels) == set(model.version_labels)


def test_batching_parameters_fit_the_gateway_settings():
    batching = parse("BatchingParameters", "batching_parameters.txt")
    settings = Settings()
    # The gateway never sends the server a batch it would refuse.
    assert batching.max_batch_size.value == settings.tfserving_max_batch_size
    assert batching.max_batch_size.value >= settings.batch_max_size
    assert 0 < batching.batch_timeout_micros.value <= 10_000
    assert batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= 1


def test_monitoring_config_exposes_prometheus_metrics():
    monitoring = parse("MonitoringConfig", "monitoring.config")
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_a_misspelt_config_field_is_caught():
    with pytest.raises(text_format.ParseError):
        text_format.Parse(
            'model_config_list { config { name: "mnist" base_pth: "/x" } }',
            _schemas()["ModelServerConfig"](),
        )

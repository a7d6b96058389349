"""Every rendered object is valid, field by field, for the oldest Kubernetes we deploy to
and for the newest one the pinned kubernetes-validate knows."""

import copy

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.k8s.manifests import OVERLAYS, container, find

# The oldest release still in standard support at the major managed clouds: a field
# that only newer API servers accept (or require) fails here, not on a customer's
# cluster. Strict schemas refuse unknown fields, so a misspelt key fails too rather
# than being silently dropped by the API server.
OLDEST_KUBERNETES = "1.31.0"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, latest_version())


def validate(manifest, version):
    kubernetes_validate.validate(manifest, version, strict=True)


def test_the_newest_schema_is_newer_than_the_oldest_supported_release():
    # Were the pin ever lowered to 1.31, the pair above would collapse into one
    # release and the tests below would quietly check only that one.
    assert tuple(map(int, latest_version().split("."))) > (1, 31, 0)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_matches_the_kubernetes_schema(rendered, overlay, version):
    failures = []
    for manifest in rendered[overlay]:
        try:
            validate(manifest, version)
        except kubernetes_validate.ValidationError as error:
            failures.append(
                f"{manifest['kind']}/{manifest['metadata']['name']}: "
                f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_schema_validation_rejects_a_misspelt_probe(rendered, version):
    gateway = copy.deepcopy(find(rendered["cpu"], "Deployment", "gateway"))
    validate(gateway, version)
    spec = container(gateway, "gateway")
    spec["readinesProbe"] = spec.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate(gateway, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_schema_validation_rejects_a_wrongly_typed_port(rendered, version):
    service = copy.deepcopy(find(rendered["cpu"], "Service", "gateway"))
    validate(service, version)
    service["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError, match="eight thousand"):
        validate(service, version)

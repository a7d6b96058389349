"""Every rendered object is valid for a current Kubernetes API, field by field."""

import copy

import kubernetes_validate
import pytest

from tests.k8s.manifests import OVERLAYS, container, find

# The newest API the pinned kubernetes-validate ships schemas for. Strict schemas
# refuse unknown fields, so a misspelt key fails here rather than being silently
# dropped by the API server.
KUBERNETES_VERSION = "1.37.0"


def validate(manifest):
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_matches_the_kubernetes_schema(rendered, overlay):
    failures = []
    for manifest in rendered[overlay]:
        try:
            validate(manifest)
        except kubernetes_validate.ValidationError as error:
            failures.append(
                f"{manifest['kind']}/{manifest['metadata']['name']}: "
                f"{'.'.join(map(str, error.caught.absolute_path))}: {error.caught.message}"
            )
    assert not failures, "\n".join(failures)


def test_schema_validation_rejects_a_misspelt_probe(rendered):
    gateway = copy.deepcopy(find(rendered["cpu"], "Deployment", "gateway"))
    validate(gateway)
    spec = container(gateway, "gateway")
    spec["readinesProbe"] = spec.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(gateway)


def test_schema_validation_rejects_a_wrongly_typed_port(rendered):
    service = copy.deepcopy(find(rendered["cpu"], "Service", "gateway"))
    service["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(service)

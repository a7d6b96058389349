"""Every overlay rendered once per session (no cluster needed)."""

import pytest

from tests.k8s.manifests import K8S_DIR, OVERLAYS, Manifest, kubectl_path, render


@pytest.fixture(scope="session")
def kubectl() -> str:
    return kubectl_path()


@pytest.fixture(scope="session")
def rendered(kubectl) -> dict[str, list[Manifest]]:
    return {overlay: render(kubectl, K8S_DIR / "overlays" / overlay) for overlay in OVERLAYS}

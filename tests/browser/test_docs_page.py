"""The API docs in a real browser, offline: /docs and /redoc render from what the gateway
itself serves, with every request to another host refused, as in an air-gapped cluster."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def open_offline(page, url: str) -> list[str]:
    """Go to `url` with every request to another host refused; the refused URLs."""
    elsewhere: list[str] = []

    def only_the_gateway(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_gateway)
    page.goto(url)
    return elsewhere


def test_swagger_ui_renders_the_api_from_the_gateway_alone(page, gateway_without_model):
    elsewhere = open_offline(page, gateway_without_model.url + "docs")

    expect(page.locator(".opblock-summary-path", has_text="/v1/predict")).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/v1/models")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert elsewhere == []


def test_redoc_renders_the_api_from_the_gateway_alone(page, gateway_without_model):
    elsewhere = open_offline(page, gateway_without_model.url + "redoc")

    heading = page.get_by_role("heading", name="Classify handwritten digits", exact=False)
    expect(heading).to_be_visible()
    page.wait_for_load_state("networkidle")
    # At most the "API docs by Redocly" logo, which the Redoc bundle links from its own
    # site (an image the browser may ask for before or after the page settles); refused,
    # it leaves a blank corner and nothing else.
    assert set(elsewhere) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}

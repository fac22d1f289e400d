"""/docs and /redoc render in a real browser with the network closed.

Debian's headless Chromium (``/usr/bin/chromium``), driven by Playwright's Python client, opens
the served pages while every request to a host other than 127.0.0.1 is aborted: Swagger UI and
ReDoc must come from the service itself (files of the fastapi-offline package). Screenshots are
kept under pytest's temporary folder (``screenshots/`` of this test's tmp_path).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.serving_support import injected_app, served
from tests.support import TrainedStore

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OPERATIONS = ("/v1/predict/tropism", "/v1/predict/dormancy", "/invocations", "/v1/models")


@pytest.fixture(scope="module")
def base_url(trained_store: TrainedStore) -> Iterator[str]:
    with served(injected_app(trained_store)) as base:
        yield base


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose requests beyond 127.0.0.1 are aborted (and listed)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.route("**/*", only_local)
            yield context.new_page(), blocked
        finally:
            browser.close()


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def test_swagger_ui_renders_every_operation_offline(
    page: tuple[Any, list[str]], base_url: str, tmp_path: Path
) -> None:
    browser_page, blocked = page
    browser_page.goto(f"{base_url}/docs")
    browser_page.wait_for_selector(".opblock-summary-path", timeout=60_000)
    shown = set(browser_page.locator(".opblock-summary-path").all_inner_texts())
    assert set(OPERATIONS) <= {p.strip() for p in shown}, shown
    # the prediction answer is documented by its model, not as "string"
    browser_page.locator(".opblock-summary-path", has_text="/v1/predict/tropism").first.click()
    browser_page.wait_for_selector("text=TropismResponse", timeout=30_000)
    shot = _screenshot(browser_page, tmp_path, "docs")
    assert shot.stat().st_size > 10_000
    assert not [u for u in blocked if not u.endswith((".svg", ".png", ".ico"))], blocked


def test_redoc_renders_offline(page: tuple[Any, list[str]], base_url: str, tmp_path: Path) -> None:
    browser_page, blocked = page
    browser_page.goto(f"{base_url}/redoc")
    browser_page.wait_for_function(
        "document.body.innerText.includes('/v1/predict/dormancy')", timeout=60_000
    )
    text = browser_page.inner_text("body")
    for words in ("Organ tropism", "MLflow scoring protocol", "malformed JSON or CSV"):
        assert words in text, words
    _screenshot(browser_page, tmp_path, "redoc")
    # only ReDoc's own "by Redocly" logo would come from outside
    assert not [u for u in blocked if not u.endswith((".svg", ".png", ".ico"))], blocked

"""The web client in a real browser: Debian's Chromium driven by Playwright, against the app's six real processes.

The app is started the way the end-to-end tests start it (workbook.isolated.isolated_app: free ports, a database,
an exchange and a Redis database of its own) and serves the built client (client/dist, `make client`) at `/`.
Each person in a test gets a browser *context* of their own: separate localStorage, cookies and network, like
two different computers.

Waits are on what the page shows (Playwright's expect() polls the DOM), never sleeps. The access token lives
20 s in this app, so the client's token refresh (and the reconnect that follows it) happens during the tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright
from web_people import PeopleFactory, Screenshots

from reference_app.gateway.app import CLIENT_DIST
from workbook.isolated import REDIS_DB_BROWSER, isolated_app_or_reason, started_or_fail

ACCESS_TTL_SECONDS = 20
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium as a test browser: no sandbox (root in CI), and nothing that talks to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

# A fail-safe for every expect(): a page that never shows what it should fails the test instead of hanging it.
expect.set_options(timeout=20_000)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: the web client in Chromium (select: -m browser)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (CLIENT_DIST / "index.html").is_file():
        pytest.fail(f"the web client is not built ({CLIENT_DIST} has no index.html). Fix: make client")
    env = {
        "APP_JWT__ACCESS_TTL_SECONDS": str(ACCESS_TTL_SECONDS),
        "APP_REDIS__SEND_RATE_LIMIT": "1000",  # a test seeds 40 messages at once; the limit is tested elsewhere
        "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000",  # every person signs in, and refreshes, from 127.0.0.1
        "APP_LOG__LEVEL": "INFO",
    }
    app_root = Path(request.config.getoption("app_root")).resolve()
    with started_or_fail(
        isolated_app_or_reason(
            app_root,
            run_id=f"browser_{os.getpid()}",
            redis_db=REDIS_DB_BROWSER,
            state_dir=tmp_path_factory.mktemp("browser-app-state"),
            env=env,
        ),
        pytest.fail,
    ) as app:
        page = httpx.get(app.base_url + "/", timeout=10)
        assert page.status_code == 200 and '<div id="app">' in page.text, "the gateway should serve the client at /"
        yield app.base_url


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
# and the tests collected after these ones (e2e, stages) run asyncio code of their own.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}. Fix: make browser (or set CHROMIUM to a Chromium binary)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def people(browser: Browser, base_url: str, shots: Screenshots) -> Iterator[PeopleFactory]:
    factory = PeopleFactory(browser, base_url, shots)
    yield factory
    factory.close()

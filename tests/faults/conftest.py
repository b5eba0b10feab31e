"""Fault tests: the app, really running, loses a service or a process of its own while users chat.

One isolated app for the folder (``workbook.isolated``: its own PostgreSQL database, MongoDB database, exchange,
Redis database REDIS_DB_FAULTS and free ports). The machine's services are stopped and
started the way ``python -m workbook services up`` started them, and always started again in a ``finally``: a
failed test must not leave PostgreSQL or Redis down for everyone else.

The counting (sent, acked, committed, delivered, duplicates, lost) is in counting.py; the client in
tests/e2e/messenger_client.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))  # messenger_client, shared with tests/e2e

from fault_app import FaultApp
from messenger_client import RunningApp

from workbook.isolated import REDIS_DB_FAULTS, isolated_app_or_reason, started_or_fail


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault tests against the app's real processes (select: -m faults)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultApp]:
    run_id = f"faults_{os.getpid()}"
    state_dir = tmp_path_factory.mktemp("faults-app-state")
    env = {
        "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # the load is fast on purpose; rate limits are tested elsewhere
        "APP_REDIS__SIGN_IN_RATE_LIMIT": "1000000",  # every user signs in from 127.0.0.1
        "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",
        "APP_LOG__LEVEL": "INFO",
    }
    app_root = Path(request.config.getoption("app_root")).resolve()
    with (
        started_or_fail(
            isolated_app_or_reason(app_root, run_id=run_id, redis_db=REDIS_DB_FAULTS, state_dir=state_dir, env=env),
            pytest.fail,
        ) as app,
        ExitStack() as restarted,
    ):
        running = RunningApp(app.base_url, app.ws_url, app.settings.postgres.url, app.settings, app.runner)
        yield FaultApp(running, app, app_root, state_dir, dict(app.env), restarted)

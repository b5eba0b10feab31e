"""The app, really running: its six processes started by the workbook's runner, on free ports, for this session.

Everything the app touches is its own, so the tests never meet a learner's running app (``make start``) nor
another test run: a throwaway PostgreSQL database, a MongoDB database, a RabbitMQ exchange (and with it the
notifier's queue), a Redis database number, and ports the system says are free. The processes run the same
application root the stage tests import (``--app-root``; reference_app/ by default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from messenger_client import RunningApp

from workbook.isolated import REDIS_DB_END_TO_END, isolated_app_or_reason, started_or_fail


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests against the app's real processes (select: -m e2e)")


@pytest.fixture(scope="session")
def running_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    # This app lives until the session ends, while the stage tests run: it has a Redis database of its own.
    env = {
        "APP_REDIS__SEND_RATE_LIMIT": "1000000",  # the broker-restart test sends fast; rate limits are tested elsewhere
        "APP_REDIS__SIGN_IN_RATE_LIMIT": "1000000",  # every user of the session signs in from 127.0.0.1
        "APP_REDIS__SIGN_IN_ADDRESS_RATE_LIMIT": "1000000",
        "APP_LOG__LEVEL": "INFO",
    }
    app_root = Path(request.config.getoption("app_root")).resolve()
    with started_or_fail(
        isolated_app_or_reason(
            app_root,
            run_id=f"e2e_{os.getpid()}",
            redis_db=REDIS_DB_END_TO_END,
            state_dir=tmp_path_factory.mktemp("app-state"),
            env=env,
        ),
        pytest.fail,
    ) as app:
        yield RunningApp(app.base_url, app.ws_url, app.settings.postgres.url, app.settings, app.runner)

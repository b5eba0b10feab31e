"""The commands a learner runs when something is wrong: they name the problem and the fix."""

import os
import socket
import subprocess
import sys

from workbook.paths import REPO_ROOT


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_workbook(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbook", *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_services_up_names_a_given_server_that_does_not_answer_and_the_fix() -> None:
    result = run_workbook("services", "up", APP_REDIS__URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert result.returncode == 1
    assert "✗ Redis" in result.stdout and "tried: the URL in APP_REDIS__URL" in result.stdout
    assert "fix:" in result.stdout
    assert "✓ PostgreSQL" in result.stdout, "the other services still come up"


def test_doctor_reports_each_service_and_prints_a_fix_for_a_missing_one() -> None:
    healthy = run_workbook("doctor")
    assert healthy.returncode == 0, healthy.stdout
    for label in ("PostgreSQL", "MongoDB", "Redis", "RabbitMQ"):
        assert f"✓ {label}" in healthy.stdout
    broken = run_workbook("doctor", APP_MONGO__URL=f"mongodb://127.0.0.1:{closed_port()}/")
    assert broken.returncode == 1
    assert "✗ MongoDB does not answer" in broken.stdout and "fix: python -m workbook services up" in broken.stdout


def test_a_wrong_setting_stops_the_workbook_with_one_line() -> None:
    result = run_workbook("doctor", APP_HTTP__PORT="not-a-port")
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: APP_HTTP__PORT") and result.stderr.count("\n") == 1

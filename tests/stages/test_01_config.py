"""Stage 01 — configuration. These tests grade the exercises of stage 01 in whichever app root is mounted as `app`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from app.config import ConfigError, Environment, load_settings, resolve_environment

from workbook.paths import REPO_ROOT

exercise = pytest.mark.exercise
TEST_KEY = "test-only-signing-key"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No APP_* variable from the machine, and a fresh working directory with no .env in it."""
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_dotenv(directory: Path, **values: str) -> None:
    (directory / ".env").write_text("".join(f"{name}={value}\n" for name, value in values.items()))


# 01.1 — choosing the environment -----------------------------------------------------------------------------


@exercise("01.1")
def test_environment_is_local_when_nothing_says_otherwise() -> None:
    assert resolve_environment() == Environment.LOCAL, "with no APP_ENV anywhere the environment must be 'local'"


@exercise("01.1")
def test_app_env_variable_chooses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "dev")
    assert resolve_environment() == Environment.DEV, "APP_ENV=dev in the environment must choose 'dev'"


@exercise("01.1")
def test_dotenv_chooses_when_the_variable_is_unset(clean_environment: Path) -> None:
    write_dotenv(clean_environment, APP_ENV="prod")
    assert resolve_environment() == Environment.PROD, (
        "APP_ENV=prod in .env must choose 'prod' when the variable is unset"
    )


@exercise("01.1")
def test_variable_beats_dotenv(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    write_dotenv(clean_environment, APP_ENV="prod")
    monkeypatch.setenv("APP_ENV", "dev")
    assert resolve_environment() == Environment.DEV, "the APP_ENV variable must win over APP_ENV in .env"


@exercise("01.1")
def test_unknown_environment_stops_with_a_message_naming_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(ConfigError) as error:
        resolve_environment()
    assert "APP_ENV" in str(error.value) and "staging" in str(error.value), (
        f"the error must name APP_ENV and the bad value; it said: {error.value}"
    )


# 01.2 — which source wins ------------------------------------------------------------------------------------


@exercise("01.2")
def test_yaml_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "dev")
    settings = load_settings()
    assert settings.log.format == "json", "dev.yaml sets log.format to json; the class default must not win over it"
    assert settings.log.level == "DEBUG", "dev.yaml sets log.level to DEBUG; the class default must not win over it"


@exercise("01.2")
def test_dotenv_beats_yaml(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    monkeypatch.setenv("APP_ENV", "dev")
    write_dotenv(clean_environment, APP_LOG__LEVEL="WARNING")
    assert load_settings().log.level == "WARNING", "APP_LOG__LEVEL in .env must win over log.level in dev.yaml"


@exercise("01.2")
def test_environment_variable_beats_dotenv(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> None:
    write_dotenv(clean_environment, APP_HTTP__PORT="8001")
    monkeypatch.setenv("APP_HTTP__PORT", "9000")
    assert load_settings().http.port == 9000, "APP_HTTP__PORT in the environment must win over the one in .env"


@exercise("01.2")
def test_one_nested_variable_keeps_the_rest_of_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_POSTGRES__POOL_MAX_SIZE", "3")
    settings = load_settings()
    assert settings.postgres.pool_max_size == 3, "APP_POSTGRES__POOL_MAX_SIZE=3 must set postgres.pool_max_size"
    assert settings.postgres.url.startswith("postgresql://"), "setting one field must not wipe the section's others"


@exercise("01.2")
def test_environment_variable_beats_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "dev")
    monkeypatch.setenv("APP_LOG__FORMAT", "text")
    assert load_settings().log.format == "text", "APP_LOG__FORMAT in the environment must win over dev.yaml"


# 01.3 — production refuses to start without its secret ------------------------------------------------------


@exercise("01.3")
def test_prod_without_a_signing_key_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "APP_JWT__SIGNING_KEY" in str(error.value), (
        f"the error must name APP_JWT__SIGNING_KEY; it said: {error.value}"
    )
    assert "APP_JWT__PUBLIC_KEY" in str(error.value), (
        f"the error must say that a verifying service may set APP_JWT__PUBLIC_KEY instead; it said: {error.value}"
    )


@exercise("01.3")
def test_prod_with_a_signing_key_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    monkeypatch.setenv("APP_JWT__SIGNING_KEY", TEST_KEY)
    settings = load_settings()
    assert settings.env == Environment.PROD
    assert settings.jwt.signing_key is not None and settings.jwt.signing_key.get_secret_value() == TEST_KEY
    assert TEST_KEY not in repr(settings), "the signing key must be a SecretStr: it must never show in a repr or a log"


@exercise("01.3")
def test_prod_with_only_a_public_key_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat, content and gateway services only verify tokens: the public key is all they may hold."""
    monkeypatch.setenv("APP_ENV", "prod")
    monkeypatch.setenv("APP_JWT__PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----")
    settings = load_settings()
    assert settings.jwt.signing_key is None and settings.jwt.public_key, (
        "prod with APP_JWT__PUBLIC_KEY alone must start: a verifying service needs no private key"
    )


@exercise("01.3")
@pytest.mark.parametrize("environment", ["local", "dev"])
def test_local_and_dev_start_without_a_signing_key(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.setenv("APP_ENV", environment)
    assert load_settings().jwt.signing_key is None, f"{environment} must start without a signing key"


# 01.4 — one line that names the variable ---------------------------------------------------------------------


@exercise("01.4")
def test_a_bad_value_is_reported_by_its_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_HTTP__PORT", "70000")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "APP_HTTP__PORT" in message, f"the error must name the variable APP_HTTP__PORT; it said: {message}"
    assert "70000" in message, f"the error must show the bad value 70000; it said: {message}"
    assert "\n" not in message, f"the error must be one line; it was:\n{message}"


@exercise("01.4")
def test_several_problems_fit_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_HTTP__PORT", "0")
    monkeypatch.setenv("APP_LOG__LEVEL", "LOUD")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "APP_HTTP__PORT" in message and "APP_LOG__LEVEL" in message, (
        f"both variables must be named; it said: {message}"
    )
    assert "\n" not in message, f"the error must be one line; it was:\n{message}"


@exercise("01.4")
def test_a_validator_message_reads_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith("APP_JWT__SIGNING_KEY"), (
        f"drop pydantic's 'Value error, ' prefix: the line must start with the variable; it said: {error.value}"
    )


@exercise("01.3")
@exercise("01.4")
def test_start_up_prints_one_line_and_exits_with_status_2(
    clean_environment: Path, request: pytest.FixtureRequest
) -> None:
    """What a person sees when a service starts with a broken configuration."""
    app_root = Path(request.config.getoption("app_root")).resolve()
    program = (
        "import sys; from pathlib import Path; from workbook.approot import mount_app; "
        f"mount_app(Path({str(app_root)!r})); from app.config.__main__ import main; sys.exit(main())"
    )
    environment = {**os.environ, "APP_ENV": "prod", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, (
        f"start-up must exit with status 2; it exited {result.returncode}: {result.stderr[-300:]}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "APP_JWT__SIGNING_KEY" in lines[0], (
        f"start-up must print one line naming the variable: {lines}"
    )

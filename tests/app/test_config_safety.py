"""Settings never echo a secret, and a typo in a variable's name stops start-up instead of being ignored."""

import os
from pathlib import Path

import pytest

from reference_app.config import ConfigError, load_settings
from reference_app.config.settings import mask_url_password


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_misspelt_variable_name_stops_start_up_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_JWT_SIGNING_KEY", "-----BEGIN PRIVATE KEY----- secret")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "APP_JWT_SIGNING_KEY" in str(error.value) and "secret" not in str(error.value)


def test_a_misspelt_field_stops_start_up_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_POSTGRES__URLL", "postgresql://u:hunter2@db/x")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "APP_POSTGRES__URLL" in str(error.value) and "hunter2" not in str(error.value)


def test_an_ordinary_bad_value_is_shown_to_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_HTTP__PORT", "not-a-port")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "not-a-port" in str(error.value)


def test_an_empty_signing_key_in_the_environment_hides_the_one_in_dotenv(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the runner keeps the private key away from the services that only verify tokens."""
    (clean_environment / ".env").write_text("APP_JWT__SIGNING_KEY=a-private-key-kept-in-dotenv\n")
    assert load_settings().jwt.signing_key is not None, "without an override, .env's key is read"
    monkeypatch.setenv("APP_JWT__SIGNING_KEY", "")
    assert load_settings().jwt.signing_key is None, "an empty variable means no key, and it beats .env"


def test_other_tools_lines_in_dotenv_are_left_alone(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("COMPOSE_PROJECT_NAME=messenger\nAPP_HTTP__PORT=8100\n")
    assert load_settings().http.port == 8100


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://messenger:s3cret@127.0.0.1:5672/%2F", "amqp://messenger:***@127.0.0.1:5672/%2F"),
        ("mongodb://u:p@h/db?x=a@b", "mongodb://u:***@h/db?x=a@b"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_printed_urls_hide_their_password(url: str, masked: str) -> None:
    assert mask_url_password(url) == masked

"""Typed settings for every service of the messenger.

A value can come from four places. The first place that has it wins:

1. an environment variable, e.g. ``APP_POSTGRES__URL`` (``__`` steps into a section);
2. the ``.env`` file in the working directory, same names;
3. the YAML file of the environment: ``local.yaml``, ``dev.yaml`` or ``prod.yaml`` beside this module;
4. the defaults written in the classes below.

The environment itself is chosen by ``APP_ENV`` (``local`` when unset).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_DIR = Path(__file__).parent
# Fields whose values never appear in an error message, whatever is wrong with them.
NEVER_ECHOED = {"signing_key", "url"}
ENV_PREFIX = "APP_"
NESTED_DELIMITER = "__"


class Environment(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    PROD = "prod"


class ConfigError(Exception):
    """The configuration cannot be used. The message is one line that names the variable to fix."""


def env_var_name(*location: str | int) -> str:
    """The environment variable that sets a field: ``env_var_name("jwt", "signing_key")`` → ``APP_JWT__SIGNING_KEY``."""
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part) for part in location).upper()


class Section(BaseModel):
    """A section of the settings. An unknown key in it is a typo, and a typo must stop start-up."""

    model_config = ConfigDict(extra="forbid")


class TlsFiles(Section):
    """A certificate and its private key, PEM files. Both or neither: one without the other is a typo."""

    tls_cert_file: Path | None = None  # the certificate chain: ours first, then the authority's
    tls_key_file: Path | None = None  # the private key: readable by its owner only (reference_app/tls.py checks)

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsFiles:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both, or neither")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class HttpSettings(TlsFiles):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # Whose X-Forwarded-For header names the client: the load balancer's address (comma-separated; "*" only where
    # nothing but the balancer can reach the gateway, and the balancer SETS the header rather than adding to a
    # client's: workbook/balancer.py). From anyone else, the header is any address they like.
    forwarded_allow_ips: str = "127.0.0.1"


class GrpcSettings(TlsFiles):
    # TLS between the services: each server listens with tls_cert_file and tls_key_file; each client trusts the
    # authority in tls_ca_file, and only it (not the system's list: nobody outside signs our internal names).
    # Where a gRPC service LISTENS. 127.0.0.1 keeps it off the network; a container listens on 0.0.0.0.
    bind_host: str = "127.0.0.1"
    # Where the others CONNECT to each service: the same machine here, a container's name in compose.
    auth_host: str = "127.0.0.1"
    chat_host: str = "127.0.0.1"
    content_host: str = "127.0.0.1"
    auth_port: int = Field(default=50051, ge=1, le=65535)
    chat_port: int = Field(default=50052, ge=1, le=65535)
    content_port: int = Field(default=50053, ge=1, le=65535)
    deadline_seconds: float = Field(default=5.0, gt=0)
    tls_ca_file: Path | None = None


class PostgresSettings(Section):
    url: str = "postgresql://messenger:messenger@127.0.0.1:5432/messenger"
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    history_page_max: int = Field(default=100, ge=1)


class MongoSettings(Section):
    url: str = "mongodb://127.0.0.1:27017/"
    database: str = "messenger"
    feed_page_max: int = Field(default=50, ge=1)
    max_media_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    media_content_types: list[str] = ["image/jpeg", "image/png", "image/gif", "image/webp"]


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    profile_cache_ttl_seconds: int = Field(default=300, gt=0)
    presence_ttl_seconds: int = Field(default=60, gt=0)
    send_rate_limit: int = Field(default=20, gt=0)  # messages a user may send per window
    send_rate_window_seconds: int = Field(default=10, gt=0)
    # Sign-in attempts (register, login, refresh) per window: each costs an Argon2 hash (~30 ms, ~19 MiB), and
    # password guessing must not be cheap. Per account (login, register) and per client address (all three).
    sign_in_rate_limit: int = Field(default=10, gt=0)
    sign_in_address_rate_limit: int = Field(default=30, gt=0)
    sign_in_rate_window_seconds: int = Field(default=60, gt=0)


class RabbitMQSettings(Section):
    url: str = "amqp://messenger:messenger@127.0.0.1:5672/%2F"
    exchange: str = "messenger.events"


class JwtSettings(Section):
    # A PEM private key. Never committed: it comes from the environment or from .env.
    signing_key: SecretStr | None = None
    # The PEM public key of signing_key: all a service needs to VERIFY tokens. Not a secret. When unset, it is
    # derived from signing_key. The algorithm is no setting: it is pinned in reference_app/auth/tokens.py.
    public_key: str | None = None
    issuer: str = "messenger-auth"
    audience: str = "messenger"
    access_ttl_seconds: int = Field(default=900, gt=0)
    refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    @field_validator("signing_key", "public_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``APP_JWT__SIGNING_KEY=`` means "no key": how a process is told to ignore a key that .env holds."""
        return None if value == "" else value


LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json", "json-compact"]


class LogSettings(Section):
    level: LogLevel = "INFO"
    format: LogFormat = "json-compact"
    colour: bool = False


class Settings(BaseSettings):
    """Everything a service needs to start. Build it with :func:`load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        # .env is shared with other tools (docker compose reads it too): their lines are not ours to refuse.
        extra="ignore",
    )

    env: Environment = Environment.LOCAL
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    postgres: PostgresSettings = PostgresSettings()
    mongo: MongoSettings = MongoSettings()
    redis: RedisSettings = RedisSettings()
    rabbitmq: RabbitMQSettings = RabbitMQSettings()
    jwt: JwtSettings = JwtSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # exercise 01.2: rank the sources: environment, then .env, then the YAML file
        raise NotImplementedError("exercise 01.2 is yours to write: see notebooks/01_config.ipynb, section 'Exercise 01.2'. Stuck? python -m workbook hint 01.2")
        # end exercise

    @model_validator(mode="after")
    def _require_production_secrets(self) -> Settings:
        # exercise 01.3: refuse to start in prod without a JWT key
        raise NotImplementedError("exercise 01.3 is yours to write: see notebooks/01_config.ipynb, section 'Exercise 01.3'. Stuck? python -m workbook hint 01.3")
        # end exercise

    def public_view(self) -> dict[str, Any]:
        """The settings as plain data, safe to print: secrets and URL passwords are masked."""
        data = self.model_dump(mode="json")
        for section in data.values():
            if isinstance(section, dict) and isinstance(section.get("url"), str):
                section["url"] = mask_url_password(section["url"])
        return data


def mask_url_password(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://user:***@host/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"))


def resolve_environment(dotenv_path: Path = Path(".env")) -> Environment:
    """Pick the environment: ``APP_ENV`` from the process, else from ``.env``, else ``local``."""
    # exercise 01.1: choose the environment from APP_ENV
    raise NotImplementedError("exercise 01.1 is yours to write: see notebooks/01_config.ipynb, section 'Exercise 01.1'. Stuck? python -m workbook hint 01.1")
    # end exercise


def describe_validation_error(error: ValidationError) -> str:
    """One line for a person: which variable is wrong and why."""
    # exercise 01.4: turn a pydantic ValidationError into one line that names the variable
    raise NotImplementedError("exercise 01.4 is yours to write: see notebooks/01_config.ipynb, section 'Exercise 01.4'. Stuck? python -m workbook hint 01.4")
    # end exercise


def _refuse_unknown_variables(dotenv_path: Path) -> None:
    """An ``APP_`` variable that names no section is a typo (``APP_JWT_SIGNING_KEY`` for ``APP_JWT__SIGNING_KEY``)."""
    names = set(os.environ) | {name for name in dotenv_values(dotenv_path) if name}
    sections = {field.upper() for field in Settings.model_fields}
    unknown = sorted(
        name
        for name in names
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].split(NESTED_DELIMITER)[0] not in sections
    )
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)}: names are {ENV_PREFIX}<SECTION>{NESTED_DELIMITER}<FIELD>, "
            f"e.g. {env_var_name('jwt', 'signing_key')}"
        )


def load_settings(dotenv_path: Path = Path(".env")) -> Settings:
    """Read the settings of the environment ``APP_ENV`` names. Raises :class:`ConfigError` with a one-line message."""
    env = resolve_environment(dotenv_path)
    _refuse_unknown_variables(dotenv_path)
    yaml_path = CONFIG_DIR / f"{env.value}.yaml"
    yaml_layer = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    try:
        # The YAML layer goes in as constructor arguments, which settings_customise_sources ranks below env and .env.
        return Settings(**{**yaml_layer, "env": env}, _env_file=dotenv_path)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None

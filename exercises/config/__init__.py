"""Stage 01: typed settings from YAML, .env and environment variables."""

from .settings import (
    ConfigError,
    Environment,
    Settings,
    describe_validation_error,
    env_var_name,
    load_settings,
    resolve_environment,
)

__all__ = [
    "ConfigError",
    "Environment",
    "Settings",
    "describe_validation_error",
    "env_var_name",
    "load_settings",
    "resolve_environment",
]

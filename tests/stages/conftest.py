"""Fixtures the stage tests share: throwaway PostgreSQL databases.

Each test that asks for one gets a database of its own, created empty (or migrated with the app's own
migrations), and dropped afterwards. A server that does not answer fails the test: it is never skipped.
"""

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from app.config import load_settings
from psycopg import sql

FIX = "Fix: python -m workbook services up"


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    server_url = load_settings().postgres.url
    name = f"stage_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL does not answer at {urlsplit(server_url).netloc.split('@')[-1]}: {error}. {FIX}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield _with_database(server_url, name)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    """The URL of a new database with the app's migrations applied (stage 03), dropped after the test."""
    from app.db import apply_migrations

    apply_migrations(empty_postgres_url)
    return empty_postgres_url

"""Fixtures the stage tests share: throwaway PostgreSQL databases.

Each test that asks for one gets a database of its own, dropped afterwards. A server that does not answer fails
the test: it is never skipped.
"""

import uuid
from collections.abc import Iterator

import pytest
from app.config import load_settings

from workbook.databases import throwaway_database


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    with throwaway_database(load_settings().postgres.url, f"stage_test_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    """The URL of a new database with the app's migrations applied (stage 03), dropped after the test."""
    from app.db import apply_migrations

    apply_migrations(empty_postgres_url)
    return empty_postgres_url

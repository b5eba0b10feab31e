"""Versioned SQL migrations: each file in migrations/ is applied once, in order, in its own transaction.

A migration is a file named ``NNNN_name.sql``. The runner records every applied file, with a checksum of its
text, in ``public.schema_migrations``. Running it again applies nothing new. A file edited after it was
applied stops the run: the database would no longer match the files, and nobody should find that out later.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Any fixed number: two runners starting at once queue on this lock instead of applying the same file twice.
ADVISORY_LOCK_KEY = 3_141_592


class MigrationError(Exception):
    """The migrations cannot be applied safely. The message says which file and why."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def file_name(self) -> str:
        return f"{self.version}_{self.name}.sql"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in version order. A badly named file or a repeated version is an error."""
    # exercise 03.1: read the migration files in version order
    raise NotImplementedError("exercise 03.1 is yours to write: see notebooks/03_schema.ipynb, section 'Exercise 03.1'. Stuck? python -m workbook hint 03.1")
    # end exercise


def pending_migrations(available: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """The migrations still to apply, given the applied versions and their checksums."""
    # exercise 03.2: decide what is left to apply, refusing a database that no longer matches the files
    raise NotImplementedError("exercise 03.2 is yours to write: see notebooks/03_schema.ipynb, section 'Exercise 03.2'. Stuck? python -m workbook hint 03.2")
    # end exercise


def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending; return the file names applied now (empty when the database is up to date)."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        # Lock first: CREATE TABLE IF NOT EXISTS is not safe against a second runner doing the same at that moment
        # (one of them fails with a duplicate key on pg_type), so even the bookkeeping table is made under the lock.
        connection.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            return _apply_pending(connection, directory)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _apply_pending(connection: psycopg.Connection[tuple[str, str]], directory: Path) -> list[str]:
    # exercise 03.3: apply each pending migration and record it, all or nothing per file
    raise NotImplementedError("exercise 03.3 is yours to write: see notebooks/03_schema.ipynb, section 'Exercise 03.3'. Stuck? python -m workbook hint 03.3")
    # end exercise

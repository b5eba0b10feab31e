"""Throwaway PostgreSQL databases: made empty for one test, benchmark or notebook, and dropped afterwards."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


class ServerUnreachable(Exception):
    """PostgreSQL does not answer. The message says how to bring it up."""


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``, with the same user and password."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextmanager
def throwaway_database(server_url: str, name: str) -> Iterator[str]:
    """Create database ``name`` (dropping a leftover of that name first), yield its URL, drop it on the way out.

    The drop opens a connection of its own: a fault test may restart PostgreSQL in between, which ends every
    connection that was open.
    """
    with _admin(server_url) as admin:
        _drop(admin, name)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server_url, name)
    finally:
        with _admin(server_url) as admin:
            _drop(admin, name)


def _admin(server_url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        where = urlsplit(server_url).netloc.rpartition("@")[2]
        raise ServerUnreachable(
            f"PostgreSQL does not answer at {where}: {error}. Fix: python -m workbook services up"
        ) from None


def _drop(admin: psycopg.Connection[Any], name: str, attempts: int = 50) -> None:
    """DROP DATABASE … WITH (FORCE), again for a moment while a server process our role may not end is inside it.

    An autovacuum worker can be at work in a database a test just filled; it leaves within moments.
    """
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(attempts):
        try:
            admin.execute(drop)
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)

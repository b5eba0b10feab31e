"""A pool of PostgreSQL connections for an asyncio service, opened from the settings and closed cleanly.

Opening a connection costs a TCP handshake, authentication and a new server process: milliseconds. A use
case takes a whole millisecond or less. So a service opens a few connections once, at start-up, and lends
one to each use case for as long as it runs. ``pool_min_size`` connections are kept open even when idle;
at most ``pool_max_size`` exist at once, and a use case that finds them all busy waits for one.

The connections are in **autocommit** mode: a statement that is not inside ``connection.transaction()`` is
a transaction of its own. Code that needs several statements to succeed or fail together says so with a
transaction block, and a forgotten block can never leave a connection "idle in transaction", holding locks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..config.settings import PostgresSettings

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[TupleRow]]

# How long start-up waits for the first pool_min_size connections before it gives up with an error.
OPEN_TIMEOUT_SECONDS = 10.0


@asynccontextmanager
async def open_pool(settings: PostgresSettings, *, name: str = "messenger") -> AsyncIterator[Pool]:
    """A pool sized by the settings, ready to lend connections; closed when the block ends.

    It waits until ``pool_min_size`` connections are open, so a server that does not answer fails here, at
    start-up, with psycopg_pool's ``PoolTimeout``, and not on the first request.
    """
    pool: Pool = AsyncConnectionPool(
        settings.url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        kwargs={"autocommit": True},
        # A connection is checked before it is lent: after a PostgreSQL restart every pooled connection is dead,
        # and without the check each one would fail a request of its own before the pool replaced it.
        check=AsyncConnectionPool.check_connection,
        name=name,
        open=False,  # an async pool must be opened with await, inside the running event loop
    )
    await pool.open(wait=True, timeout=OPEN_TIMEOUT_SECONDS)
    try:
        yield pool
    finally:
        await pool.close()

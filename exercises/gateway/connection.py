"""One WebSocket connection, as the hub sees it: a bounded outgoing queue, one writer task, and a frame rate.

Many things want to send on a socket: the answer to a command, a message pushed from the broker, a typing
signal. Only one coroutine may write to a WebSocket at a time, and none of them may wait for a slow client.
So every frame is *offered* to the connection's queue, which never waits: the one writer task takes frames
from the queue and sends them, in order.

The queue is bounded twice: by frames and by bytes. A client that reads slower than its frames arrive (a
phone in a tunnel, a stuck tab) fills its queue; the next offer finds no room, the queued frames are dropped
and the connection is closed with 1013 ("try again later"). Frames alone would not bound memory: 256 sync
answers of a megabyte each are 256 MB. The alternative, an unbounded queue, lets one slow client grow the
gateway's memory until the process dies, taking every other connection with it. The closed client loses
nothing for good: it reconnects and asks for the messages after its last seq (``sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from loguru import logger

# Close codes (docs/websocket_protocol.md, "Close codes").
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013  # too slow reading; or the token could not be checked right now
CLOSE_UNAUTHENTICATED = 4401


class Socket(Protocol):
    """What a connection needs of a WebSocket (Starlette's has both); a test passes a fake."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


def frame_bytes(text: str) -> int:
    """The size of a frame on the wire (UTF-8). ASCII text, the usual case, is measured without encoding it."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@dataclass(frozen=True)
class Close:
    """Put in the queue instead of a frame: the writer closes the socket with this code when it gets here."""

    code: int
    reason: str


class Connection:
    """A socket's outgoing side: ``offer`` frames (never waits), ``run_writer`` sends them, ``close`` ends it."""

    def __init__(self, socket: Socket, *, queue_frames: int, queue_bytes: int, send_timeout_seconds: float) -> None:
        if queue_frames < 1 or queue_bytes < 1:
            raise ValueError(f"an outgoing queue holds at least 1 frame and 1 byte; got {queue_frames}, {queue_bytes}")
        self._socket = socket
        self._queue: asyncio.Queue[str | Close] = asyncio.Queue(maxsize=queue_frames)
        self._queue_bytes = queue_bytes  # the budget
        self._queued_bytes = 0  # the frames in the queue, and the one being sent, in bytes
        self._send_timeout_seconds = send_timeout_seconds
        self.user_id: int | None = None  # set once the connection has authenticated
        self.close_code: int | None = None  # set by close(): no frame is accepted after it

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def queued(self) -> int:
        """Frames waiting to be written (never more than the queue's size)."""
        return self._queue.qsize()

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames waiting to be written and of the one being written (never more than the budget)."""
        return self._queued_bytes

    def offer(self, frame: str) -> bool:
        """Queue a frame for the writer without waiting; False if it was not queued.

        No room (the frame budget or the byte budget is used up) means the client is not reading: the queued
        frames are dropped and the connection is closed with CLOSE_TRY_LATER.
        """
        # exercise 07.5: queue a frame without ever waiting; a full queue disconnects the slow reader
        raise NotImplementedError("exercise 07.5 is yours to write: see notebooks/07_http_websocket.ipynb, section 'Exercise 07.5'. Stuck? python -m workbook hint 07.5")
        # end exercise

    def close(self, code: int, reason: str, *, drop_queued: bool = False) -> None:
        """Close after the frames already queued, or instead of them (``drop_queued``). Later calls do nothing.

        Queued frames are dropped anyway when the queue has no room left for the Close.
        """
        if self.closing:
            return
        self.close_code = code
        if drop_queued or self._queue.full():
            # The client is not reading them anyway; it will sync what it missed.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, str):
                    self._queued_bytes -= frame_bytes(item)
        self._queue.put_nowait(Close(code, reason))

    async def run_writer(self) -> None:
        """Send queued frames in order until a Close is reached (the socket is then closed) or a send fails."""
        while True:
            item = await self._queue.get()
            if isinstance(item, Close):
                with contextlib.suppress(Exception):  # the client may be gone already: nothing left to tell it
                    await self._socket.close(item.code, item.reason)
                return
            try:
                async with asyncio.timeout(self._send_timeout_seconds):
                    await self._socket.send_text(item)
                self._queued_bytes -= frame_bytes(item)
            except TimeoutError:
                self.close_code = self.close_code or CLOSE_TRY_LATER
                with contextlib.suppress(Exception):
                    await self._socket.close(CLOSE_TRY_LATER, "too slow reading: a frame took too long to send")
                return


class TokenBucket:
    """At most ``burst`` frames at once, refilled at ``rate`` per second: the per-connection frame limit.

    A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second. Each frame takes one; a frame
    that finds the bucket empty is refused, and told how long until the next token.
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1; got rate={rate}, burst={burst}")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is one (nothing is taken then)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

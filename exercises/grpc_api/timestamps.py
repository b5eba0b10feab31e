"""``datetime`` ↔ ``google.protobuf.Timestamp``: the one way every message of the messenger carries a moment.

A Timestamp is seconds and nanoseconds since 1970-01-01 UTC, with no time zone: a moment, not a wall-clock
reading. So only aware datetimes go in (ours come from PostgreSQL's timestamptz and from MongoDB in UTC), and
what comes out is in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def to_timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime names no moment; give it a time zone")
    timestamp = Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


def to_optional_timestamp(moment: datetime | None) -> Timestamp | None:
    """None stays None: a message field left unset reads as "never" (e.g. a message never edited)."""
    return None if moment is None else to_timestamp(moment)


def from_timestamp(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)

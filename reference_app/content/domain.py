"""The content service's model: posts, comments and media, and the rules on what a client may send.

No I/O here. The adapters store and load these values; this module says what a valid one is, and names
the errors a caller can expect. Every error carries one plain sentence meant for the person who sent the
request.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

POST_TEXT_MAX_CHARS = 4000
COMMENT_TEXT_MAX_CHARS = 2000
MEDIA_PER_POST_MAX = 10
FILENAME_MAX_CHARS = 255
DEFAULT_PAGE_SIZE = 20
# BSON stores whole numbers in at most 64 bits; a larger id could not be stored at all.
USER_ID_MAX = 2**63 - 1


class ContentError(Exception):
    """Something the caller asked for cannot be done. The message says why, in one sentence."""


class InvalidInput(ContentError):
    """The request itself is wrong: a bad value, a forbidden key, an unknown cursor."""


class NotFound(ContentError):
    """The post, comment or media file named in the request does not exist."""


class MediaTooLarge(InvalidInput):
    """A media file is larger than ``MongoSettings.max_media_bytes``."""


class MediaTypeNotAllowed(InvalidInput):
    """A media file's content type is not in ``MongoSettings.media_content_types``."""


@dataclass(frozen=True)
class Post:
    id: str
    author_id: int
    text: str
    media_ids: tuple[str, ...]
    created_at: datetime
    like_count: int = 0


@dataclass(frozen=True)
class Comment:
    id: str
    post_id: str
    author_id: int
    text: str
    created_at: datetime


@dataclass(frozen=True)
class MediaRef:
    """What a post keeps about a stored file: enough to show it without reading its bytes."""

    id: str
    filename: str
    content_type: str
    length: int


@dataclass(frozen=True)
class MediaAccess:
    """What decides who may use a stored file: who uploaded it, and whether a post carries it.

    ``uploader_id`` is None for a file stored before uploads recorded their uploader: such a file belongs to
    nobody. Nobody can attach it to a post, and it can be downloaded only through a post that already carries it.
    """

    uploader_id: int | None
    attached: bool


@dataclass(frozen=True)
class Media:
    """A downloaded file: its description and its bytes."""

    ref: MediaRef
    data: bytes

    @property
    def content_type(self) -> str:
        return self.ref.content_type


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a feed, newest first. ``next_cursor`` is None on the last page."""

    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class FeedPosition:
    """Where a page ended: the sort key of its last item. A cursor is this, encoded."""

    created_at: datetime
    id: str


# --- rules on input ------------------------------------------------------------------------------------------


def require_user_id(value: object, field: str) -> int:
    """A user id is a positive whole number. ``True`` is refused although Python counts it as 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number; got {type(value).__name__} {value!r}")
    if not 1 <= value <= USER_ID_MAX:
        raise InvalidInput(f"{field} must be between 1 and {USER_ID_MAX}; got {value}")
    return value


def require_text(value: object, field: str, max_chars: int) -> str:
    """Text must be a string with something in it besides spaces, and not longer than ``max_chars``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text; got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty")
    if len(value) > max_chars:
        raise InvalidInput(f"{field} may have at most {max_chars} characters; got {len(value)}")
    return value


def require_media_ids(value: object) -> tuple[str, ...]:
    """A post names at most MEDIA_PER_POST_MAX files, each once. Whether they exist is the store's question."""
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"media_ids must be a list of ids; got {type(value).__name__}")
    if len(value) > MEDIA_PER_POST_MAX:
        raise InvalidInput(f"a post may carry at most {MEDIA_PER_POST_MAX} media files; got {len(value)}")
    for media_id in value:
        if not isinstance(media_id, str):
            raise InvalidInput(f"every media id must be text; got {type(media_id).__name__} {media_id!r}")
    if len(set(value)) != len(value):
        raise InvalidInput("media_ids names the same file twice")
    return tuple(value)


def require_filename(value: object) -> str:
    """A file name is only a label: no folders, not empty, not too long."""
    name = require_text(value, "filename", FILENAME_MAX_CHARS)
    if "/" in name or "\\" in name:
        raise InvalidInput(f"filename must not contain a folder; got {name!r}")
    return name


def page_size(requested: object, maximum: int) -> int:
    """How many items one page holds: what the caller asked for, never more than ``maximum``."""
    if requested is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    if isinstance(requested, bool) or not isinstance(requested, int):
        raise InvalidInput(f"limit must be a whole number; got {requested!r}")
    if requested < 1:
        raise InvalidInput(f"limit must be at least 1; got {requested}")
    # Capped, not refused: a client asking for "everything" gets a full page and a cursor for the rest.
    return min(requested, maximum)


# --- who may use a media file --------------------------------------------------------------------------------


def may_attach(author_id: int, uploader_id: int | None) -> bool:
    """Only the uploader can put a file in a post. A file with no recorded uploader belongs to nobody.

    An id seen elsewhere (in a URL, in a log) must not be enough to reuse someone's upload.
    """
    return uploader_id is not None and uploader_id == author_id


def may_download(reader_id: int, access: MediaAccess) -> bool:
    """A file in a post is read like the post: by every signed-in user. Until then, only its uploader reads it."""
    return access.attached or (access.uploader_id is not None and access.uploader_id == reader_id)


def media_not_found(media_id: object) -> NotFound:
    """The refusal of a file the caller may not see, worded exactly as for a file that does not exist.

    A stranger who holds the id must not even learn that something is behind it.
    """
    return NotFound(f"no media with id {media_id!r}")


# --- cursors -------------------------------------------------------------------------------------------------


def encode_cursor(position: FeedPosition) -> str:
    """An opaque token: clients hand it back unchanged and never build one themselves."""
    raw = json.dumps({"t": position.created_at.isoformat(), "id": position.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> FeedPosition:
    """The position a cursor stands for. Anything this service did not give out is refused."""
    refused = InvalidInput("the cursor is not one this service gave out; start again without a cursor")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
        created_at = datetime.fromisoformat(fields["t"])
        position = FeedPosition(created_at=created_at, id=fields["id"])
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise refused from None
    if created_at.tzinfo is None or not isinstance(position.id, str):
        raise refused
    return position

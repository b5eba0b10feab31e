"""What the rest of the messenger needs from content storage, with no word about MongoDB.

The content service's gRPC server (stage 08) depends on this protocol, so its tests can hand it a fake;
:class:`~.adapters.mongo.MongoContentStore` is the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, Protocol

from .domain import Comment, Media, MediaAccess, MediaRef, Page, Post


class ContentStore(Protocol):
    def create_post(self, author_id: int, text: str, media_ids: Sequence[str] = ()) -> Post: ...

    def get_post(self, post_id: str) -> Post: ...

    def feed(self, *, cursor: str | None = None, limit: int | None = None) -> Page[Post]: ...

    def feed_by_author(self, author_id: int, *, cursor: str | None = None, limit: int | None = None) -> Page[Post]: ...

    def add_comment(self, post_id: str, author_id: int, text: str) -> Comment: ...

    def comments_of(self, post_id: str, *, cursor: str | None = None, limit: int | None = None) -> Page[Comment]: ...

    def comment_counts(self, post_ids: Sequence[str]) -> dict[str, int]: ...

    def like(self, post_id: str, user_id: int) -> bool: ...

    def unlike(self, post_id: str, user_id: int) -> bool: ...

    def upload_media_by(
        self, uploader_id: int, source: bytes | BinaryIO, *, filename: str, content_type: str
    ) -> MediaRef: ...

    def media_access(self, media_id: str) -> MediaAccess: ...

    def download_media(self, media_id: str) -> Media: ...

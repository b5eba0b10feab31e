"""The content service's storage on MongoDB, with pymongo: posts, comments, likes and media files.

Collections:

- ``posts``: one document per post, with a ``like_count`` kept in step with ``likes``;
- ``comments``: one document per comment, pointing at its post;
- ``likes``: one document per (post, user); a unique index makes a second one impossible;
- ``media.files`` and ``media.chunks``: GridFS, the bucket named ``media``. A file's ``metadata`` holds its
  ``content_type`` and its ``uploader_id``: only the uploader attaches it to a post, and until a post carries
  it only the uploader downloads it. A file stored before uploads recorded their uploader has no
  ``uploader_id``: it belongs to nobody (see ``MediaAccess``).

Everything here works on real MongoDB and on FerretDB v1: plain CRUD, unique and compound indexes,
sorted and limited cursors, ``$match`` + ``$group`` with one ``$sum``, and GridFS. No transactions.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar

from bson import ObjectId
from gridfs import GridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from ...config.settings import MongoSettings
from ..domain import (
    COMMENT_TEXT_MAX_CHARS,
    POST_TEXT_MAX_CHARS,
    Comment,
    FeedPosition,
    InvalidInput,
    Media,
    MediaAccess,
    MediaRef,
    MediaTooLarge,
    MediaTypeNotAllowed,
    NotFound,
    Page,
    Post,
    decode_cursor,
    encode_cursor,
    may_attach,
    media_not_found,
    page_size,
    require_filename,
    require_media_ids,
    require_text,
    require_user_id,
)
from ..safety import refuse_operator_keys

Document = dict[str, Any]
T = TypeVar("T")

MEDIA_BUCKET = "media"
# Read an upload in pieces this big, so a file larger than the limit is never held in memory whole.
UPLOAD_READ_BYTES = 256 * 1024
# The one order of every feed: newest first, and the id breaks ties between posts of the same millisecond.
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]

INDEXES: dict[str, list[IndexModel]] = {
    "posts": [
        IndexModel(NEWEST_FIRST, name="posts_newest_first"),
        IndexModel([("author_id", ASCENDING), *NEWEST_FIRST], name="posts_by_author_newest_first"),
        # Multikey: one entry per media id of a post. Answers "does any post carry this file?" for a download.
        IndexModel([("media_ids", ASCENDING)], name="posts_by_media"),
    ],
    "comments": [
        IndexModel([("post_id", ASCENDING), *NEWEST_FIRST], name="comments_by_post_newest_first"),
    ],
    "likes": [
        IndexModel([("post_id", ASCENDING), ("user_id", ASCENDING)], name="one_like_per_user_per_post", unique=True),
    ],
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class MongoContentStore:
    """Posts, comments, likes and media over one pymongo ``Database``.

    Every public method takes values straight from a client and checks them first: no key may become an
    operator, ids must be ids, texts and sizes must be within the limits. Bad input raises a ``ContentError``
    (see ``domain.py``) and stores nothing.
    """

    def __init__(
        self, database: Database[Document], settings: MongoSettings, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        # Dates come back aware and in UTC, so the created_at we return equals the one we stored.
        codec = database.codec_options.with_options(tz_aware=True, tzinfo=UTC)
        self._database = database
        self._settings = settings
        self._clock = clock
        self._posts: Collection[Document] = database.get_collection("posts", codec_options=codec)
        self._comments: Collection[Document] = database.get_collection("comments", codec_options=codec)
        self._likes: Collection[Document] = database.get_collection("likes", codec_options=codec)
        self._media_files: Collection[Document] = database.get_collection(f"{MEDIA_BUCKET}.files")
        self._media = GridFSBucket(database, bucket_name=MEDIA_BUCKET)
        self._allowed_types = frozenset(kind.strip().lower() for kind in settings.media_content_types)

    def ensure_indexes(self) -> list[str]:
        """Create the indexes the queries below rely on; return their names. Safe to call at every start-up.

        Each index has a fixed name: creating one that exists with the same keys and name does nothing.
        """
        names: list[str] = []
        for collection, models in INDEXES.items():
            # One index per command: FerretDB v1.24 drops the connection when a single createIndexes
            # names two or more indexes that all exist already, i.e. on every restart after the first.
            for model in models:
                names += self._database[collection].create_indexes([model])
        return names

    # --- posts -------------------------------------------------------------------------------------------

    def create_post(self, author_id: int, text: str, media_ids: Sequence[str] = ()) -> Post:
        """Store a new post. Its media files must have been uploaded first, by its author (``upload_media_by``)."""
        refuse_operator_keys({"author_id": author_id, "text": text, "media_ids": media_ids}, "post")
        author = require_user_id(author_id, "author_id")
        body = require_text(text, "text", POST_TEXT_MAX_CHARS)
        media = require_media_ids(media_ids)
        media_oids = [self._object_id(media_id, "media") for media_id in media]
        if media_oids:
            files = self._media_files.find({"_id": {"$in": media_oids}}, {"metadata.uploader_id": 1})
            uploaders = {doc["_id"]: _uploader_of(doc) for doc in files}
            for media_id, media_oid in zip(media, media_oids, strict=True):
                # Someone else's file gets the answer of a missing one (a missing file has no uploader either):
                # the id alone must not tell a stranger that it exists.
                if not may_attach(author, uploaders.get(media_oid)):
                    raise NotFound(f"no media with id {media_id!r}: upload the file first")
        document: Document = {
            "author_id": author,
            "text": body,
            "media_ids": media_oids,
            "created_at": self._now(),
            "like_count": 0,
        }
        document["_id"] = self._posts.insert_one(document).inserted_id
        return _post_from(document)

    def get_post(self, post_id: str) -> Post:
        """One post, with its current like_count. An unknown id raises NotFound."""
        document = self._posts.find_one({"_id": self._object_id(post_id, "post")})
        if document is None:
            raise NotFound(f"no post with id {post_id!r}")
        return _post_from(document)

    def feed(self, *, cursor: str | None = None, limit: int | None = None) -> Page[Post]:
        """Every author's posts, newest first."""
        return self._page(self._posts, {}, cursor, limit, _post_from)

    def feed_by_author(self, author_id: int, *, cursor: str | None = None, limit: int | None = None) -> Page[Post]:
        """One author's posts, newest first."""
        refuse_operator_keys(author_id, "author_id")
        author = require_user_id(author_id, "author_id")
        return self._page(self._posts, {"author_id": author}, cursor, limit, _post_from)

    def _page(
        self,
        collection: Collection[Document],
        match: Document,
        cursor: str | None,
        limit: int | None,
        to_entity: Callable[[Document], T],
    ) -> Page[T]:
        """One page of ``collection`` in NEWEST_FIRST order, starting after the position ``cursor`` names."""
        # exercise 05.2: one page of a newest-first keyset feed
        raise NotImplementedError("exercise 05.2 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.2'. Stuck? python -m workbook hint 05.2")
        # end exercise

    # --- comments ----------------------------------------------------------------------------------------

    def add_comment(self, post_id: str, author_id: int, text: str) -> Comment:
        """Store a comment on an existing post."""
        refuse_operator_keys({"post_id": post_id, "author_id": author_id, "text": text}, "comment")
        author = require_user_id(author_id, "author_id")
        body = require_text(text, "text", COMMENT_TEXT_MAX_CHARS)
        post_oid = self._existing_post(post_id)
        document: Document = {"post_id": post_oid, "author_id": author, "text": body, "created_at": self._now()}
        document["_id"] = self._comments.insert_one(document).inserted_id
        return _comment_from(document)

    def comments_of(self, post_id: str, *, cursor: str | None = None, limit: int | None = None) -> Page[Comment]:
        """The comments of one post, newest first."""
        refuse_operator_keys(post_id, "post_id")
        post_oid = self._existing_post(post_id)
        return self._page(self._comments, {"post_id": post_oid}, cursor, limit, _comment_from)

    def comment_counts(self, post_ids: Sequence[str]) -> dict[str, int]:
        """How many comments each of these posts has, counted by the server. A post without any counts 0."""
        refuse_operator_keys(post_ids, "post_ids")
        # exercise 05.6: count comments per post with one aggregation
        raise NotImplementedError("exercise 05.6 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.6'. Stuck? python -m workbook hint 05.6")
        # end exercise

    # --- likes -------------------------------------------------------------------------------------------

    def like(self, post_id: str, user_id: int) -> bool:
        """Record that ``user_id`` likes the post. True when this call added the like, False when it was there.

        A client that retries (the network dropped the first answer) changes nothing the second time.
        """
        refuse_operator_keys({"post_id": post_id, "user_id": user_id}, "like")
        user = require_user_id(user_id, "user_id")
        # exercise 05.3: count a like once, however often it is sent
        raise NotImplementedError("exercise 05.3 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.3'. Stuck? python -m workbook hint 05.3")
        # end exercise

    def unlike(self, post_id: str, user_id: int) -> bool:
        """Take the like back. True when this call removed a like, False when there was none."""
        refuse_operator_keys({"post_id": post_id, "user_id": user_id}, "unlike")
        user = require_user_id(user_id, "user_id")
        # exercise 05.4: take a like back once, and only if it was there
        raise NotImplementedError("exercise 05.4 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.4'. Stuck? python -m workbook hint 05.4")
        # end exercise

    def recount_likes(self, post_id: str) -> int:
        """Set like_count from the likes themselves, and return it.

        Without transactions, a crash between the like's insert and the ``$inc`` leaves the count one short.
        This repair is safe to run at any time; an operator runs it for posts a crash may have touched.
        """
        refuse_operator_keys(post_id, "post_id")
        post_oid = self._existing_post(post_id)
        count = self._likes.count_documents({"post_id": post_oid})
        self._posts.update_one({"_id": post_oid}, {"$set": {"like_count": count}})
        return count

    # --- media -------------------------------------------------------------------------------------------

    def upload_media(self, source: bytes | BinaryIO, *, filename: str, content_type: str) -> MediaRef:
        """Store a file in GridFS. ``source`` is the bytes, or a binary stream read to its end.

        The type and the size are checked before anything stays stored: a refused file leaves no trace.
        The file records no uploader, so it belongs to nobody: the service stores uploads with
        ``upload_media_by``, which records who sent the file.
        """
        refuse_operator_keys({"filename": filename, "content_type": content_type}, "media")
        name = require_filename(filename)
        # exercise 05.5: store a media file only when its type and size are allowed
        raise NotImplementedError("exercise 05.5 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.5'. Stuck? python -m workbook hint 05.5")
        # end exercise

    def upload_media_by(
        self, uploader_id: int, source: bytes | BinaryIO, *, filename: str, content_type: str
    ) -> MediaRef:
        """Store a file as ``upload_media`` does, and record ``uploader_id`` in its metadata as its uploader."""
        refuse_operator_keys(uploader_id, "uploader_id")
        uploader = require_user_id(uploader_id, "uploader_id")
        ref = self.upload_media(source, filename=filename, content_type=content_type)
        file_id = ObjectId(ref.id)
        # Two writes, no transaction: until the second one, the file belongs to nobody. A crash in between
        # leaves a file no one can attach or download, never one that anyone can.
        try:
            self._media_files.update_one({"_id": file_id}, {"$set": {"metadata.uploader_id": uploader}})
        except PyMongoError:
            with suppress(PyMongoError, NoFile):
                self._media.delete(file_id)  # a failed upload leaves no trace, as in upload_media
            raise
        return ref

    def media_access(self, media_id: str) -> MediaAccess:
        """Who uploaded a stored file and whether a post carries it: what decides who may download it.

        An unknown id raises NotFound. A file stored before uploads recorded their uploader has none (None).
        """
        refuse_operator_keys(media_id, "media_id")
        file_id = self._object_id(media_id, "media")
        document = self._media_files.find_one({"_id": file_id}, {"metadata.uploader_id": 1})
        if document is None:
            raise media_not_found(media_id)
        attached = self._posts.find_one({"media_ids": file_id}, {"_id": 1}) is not None
        return MediaAccess(uploader_id=_uploader_of(document), attached=attached)

    def download_media(self, media_id: str) -> Media:
        """A stored file's bytes and content type. An unknown id raises NotFound.

        Anyone's file: the caller checks ``may_download`` with ``media_access`` first.
        """
        refuse_operator_keys(media_id, "media_id")
        file_id = self._object_id(media_id, "media")
        try:
            download = self._media.open_download_stream(file_id)
        except NoFile:
            raise media_not_found(media_id) from None
        with download:
            data = download.read()
            metadata: Mapping[str, Any] = download.metadata or {}
            filename = download.filename or ""
        content_type = str(metadata.get("content_type", "application/octet-stream"))
        return Media(MediaRef(id=media_id, filename=filename, content_type=content_type, length=len(data)), data)

    # --- helpers -----------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        """The clock's time cut to whole milliseconds: BSON dates keep no more, and a cursor must match what is stored."""
        now = self._clock()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _existing_post(self, post_id: object) -> ObjectId:
        post_oid = self._object_id(post_id, "post")
        if self._posts.find_one({"_id": post_oid}, {"_id": 1}) is None:
            raise NotFound(f"no post with id {post_id!r}")
        return post_oid

    @staticmethod
    def _object_id(value: object, what: str) -> ObjectId:
        """The ObjectId a client's id string stands for. A string that is no id cannot name anything: not found."""
        if isinstance(value, str) and ObjectId.is_valid(value):
            return ObjectId(value)
        raise NotFound(f"no {what} with id {value!r}")

    @staticmethod
    def _cursor_key(cursor: str) -> tuple[datetime, ObjectId]:
        """The sort key (created_at, _id) a cursor holds. A cursor this service did not write is refused."""
        position = decode_cursor(cursor)
        if not ObjectId.is_valid(position.id):
            raise InvalidInput("the cursor is not one this service gave out; start again without a cursor")
        return position.created_at, ObjectId(position.id)


def _post_from(document: Document) -> Post:
    return Post(
        id=str(document["_id"]),
        author_id=document["author_id"],
        text=document["text"],
        media_ids=tuple(str(media_id) for media_id in document["media_ids"]),
        created_at=document["created_at"],
        like_count=document["like_count"],
    )


def _uploader_of(media_file: Document) -> int | None:
    """The uploader a ``media.files`` document records; None for a file stored before uploads recorded one."""
    uploader = (media_file.get("metadata") or {}).get("uploader_id")
    return uploader if isinstance(uploader, int) and not isinstance(uploader, bool) else None


def _comment_from(document: Document) -> Comment:
    return Comment(
        id=str(document["_id"]),
        post_id=str(document["post_id"]),
        author_id=document["author_id"],
        text=document["text"],
        created_at=document["created_at"],
    )


@contextmanager
def open_content_store(settings: MongoSettings, database: str | None = None) -> Iterator[MongoContentStore]:
    """Connect, make sure the indexes exist, and hand out a store; close the connection afterwards.

    This is what the content service does at start-up. ``database`` overrides ``settings.database``
    (the notebook and the tests use a database of their own).
    """
    client: MongoClient[Document] = MongoClient(settings.url, serverSelectionTimeoutMS=5000)
    try:
        store = MongoContentStore(client[database or settings.database], settings)
        store.ensure_indexes()
        yield store
    finally:
        client.close()

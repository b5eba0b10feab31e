"""Stage 05 — MongoDB: the content service. These tests grade the exercises of stage 05 in whichever app root is
mounted as `app`, against the real server (MongoDB, or FerretDB v1 where there is no Docker).

Each test gets a database of its own, `content_test_<random hex>`, dropped when the test ends.
"""

import io
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from app.config import load_settings
from app.content import InvalidInput, MediaTooLarge, MediaTypeNotAllowed, NotFound, Post, refuse_operator_keys
from app.content.adapters.mongo import MongoContentStore
from app.content.domain import MediaAccess, may_attach, may_download
from bson import ObjectId
from pymongo import MongoClient
from pymongo.database import Database

exercise = pytest.mark.exercise
FIX = "Fix: python -m workbook services up"
KIB = 1024
MIB = 1024 * KIB


class StoppedClock:
    """A clock that moves only when told to, so several posts can share one created_at."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def client() -> Iterator[MongoClient[dict[str, Any]]]:
    mongo: MongoClient[dict[str, Any]] = MongoClient(load_settings().mongo.url, serverSelectionTimeoutMS=5000)
    try:
        mongo.admin.command("ping")
    except Exception as error:
        pytest.fail(f"MongoDB does not answer at {load_settings().mongo.url}: {error}. {FIX}")
    yield mongo
    mongo.close()


@pytest.fixture
def database(client: MongoClient[dict[str, Any]]) -> Iterator[Database[dict[str, Any]]]:
    db = client[f"content_test_{uuid.uuid4().hex}"]
    yield db
    client.drop_database(db.name)


@pytest.fixture
def clock() -> StoppedClock:
    return StoppedClock()


MakeStore = Callable[..., MongoContentStore]


@pytest.fixture
def make_store(database: Database[dict[str, Any]], clock: StoppedClock) -> MakeStore:
    """make_store(feed_page_max=5, ...) → a store on this test's database, with these MongoSettings changed."""

    def make(**overrides: Any) -> MongoContentStore:
        settings = load_settings().mongo.model_copy(update=overrides)
        store = MongoContentStore(database, settings, clock=clock)
        store.ensure_indexes()
        return store

    return make


@pytest.fixture
def store(make_store: MakeStore) -> MongoContentStore:
    return make_store()


def stored_media(database: Database[dict[str, Any]]) -> tuple[int, int]:
    """(files, chunks) in the GridFS bucket `media`."""
    return database["media.files"].count_documents({}), database["media.chunks"].count_documents({})


def walk_feed(read_page: Callable[[str | None], Any]) -> list[Post]:
    """Every post of a feed, page after page, following next_cursor until it is None."""
    posts: list[Post] = []
    cursor: str | None = None
    for _ in range(100):
        page = read_page(cursor)
        posts += page.items
        cursor = page.next_cursor
        if cursor is None:
            return posts
    raise AssertionError("the feed never ended: after 100 pages next_cursor was still not None")


def newest_first(posts: list[Post]) -> list[str]:
    """The ids in feed order: created_at descending, then id descending (ids of one length compare as text)."""
    return [post.id for post in sorted(posts, key=lambda post: (post.created_at, post.id), reverse=True)]


# 05.1 — no key may become an operator ------------------------------------------------------------------------


@exercise("05.1")
def test_a_dollar_key_deep_inside_lists_is_refused() -> None:
    payload = {"post": {"attachments": [{"meta": [{"$where": "sleep(5000)"}]}]}}
    with pytest.raises(InvalidInput) as error:
        refuse_operator_keys(payload)
    assert "$where" in str(error.value), f"the error must name the refused key '$where'; it said: {error.value}"


@exercise("05.1")
def test_a_dotted_key_deep_inside_lists_is_refused() -> None:
    payload = [{"profile": [[{"settings": {"role.admin": True}}]]}]
    with pytest.raises(InvalidInput) as error:
        refuse_operator_keys(payload)
    assert "role.admin" in str(error.value), f"the error must name the refused key 'role.admin'; it said: {error.value}"


@exercise("05.1")
def test_an_operator_key_at_the_top_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        refuse_operator_keys({"text": "hi", "$set": {"like_count": 1_000_000}})
    assert "$set" in str(error.value), f"the error must name the refused key '$set'; it said: {error.value}"


@exercise("05.1")
def test_plain_input_passes_even_when_its_values_hold_dollars_and_dots() -> None:
    payload = {
        "text": "$5 off at shop.example, see $where",
        "tags": ["a.b", "$sum", ""],
        "nested": {"ok": [1, 2.5, None, True, {"fine": ("tuple", "items")}]},
    }
    try:
        refuse_operator_keys(payload)
    except InvalidInput as error:
        raise AssertionError(f"only keys can become operators; these values must pass, but got: {error}") from None


@exercise("05.1")
def test_an_operator_as_author_id_cannot_widen_a_feed(store: MongoContentStore) -> None:
    store.create_post(1, "mine")
    store.create_post(2, "someone else's")
    with pytest.raises(InvalidInput) as error:
        store.feed_by_author({"$ne": 0})  # type: ignore[arg-type]
    assert "$ne" in str(error.value), (
        f"feed_by_author({{'$ne': 0}}) must be refused naming '$ne' (it would list every author); it said: {error.value}"
    )


@exercise("05.1")
def test_an_operator_inside_a_new_post_stores_nothing(store: MongoContentStore, database: Database[Any]) -> None:
    with pytest.raises(InvalidInput) as error:
        store.create_post({"$gt": 0}, "hello")  # type: ignore[arg-type]
    assert "$gt" in str(error.value), f"the error must name the refused key '$gt'; it said: {error.value}"
    assert database.posts.count_documents({}) == 0, "a refused post must not be stored"


# 05.2 — keyset pagination ------------------------------------------------------------------------------------


@exercise("05.2")
def test_pages_never_skip_or_repeat_posts_that_share_a_timestamp(make_store: MakeStore, clock: StoppedClock) -> None:
    store = make_store(feed_page_max=50)
    posts = [store.create_post(1, f"early {n}") for n in range(3)]
    clock.advance(1)
    posts += [store.create_post(1 + n % 2, f"same millisecond {n}") for n in range(9)]  # nine share created_at
    clock.advance(1)
    posts += [store.create_post(2, f"late {n}") for n in range(2)]
    seen = walk_feed(lambda cursor: store.feed(cursor=cursor, limit=4))
    got = [post.id for post in seen]
    assert len(got) == len(set(got)), f"a post appeared on two pages: {len(got) - len(set(got))} repeats"
    assert set(got) == {post.id for post in posts}, (
        f"posts went missing between pages: {len(posts) - len(set(got))} of {len(posts)} never appeared "
        "(posts with the same created_at need the id as a tie-breaker)"
    )
    assert got == newest_first(posts), "the feed must be ordered newest first, then by id descending"


@exercise("05.2")
def test_a_page_never_holds_more_than_feed_page_max(make_store: MakeStore) -> None:
    store = make_store(feed_page_max=5)
    for n in range(8):
        store.create_post(1, f"post {n}")
    page = store.feed(limit=1000)
    assert len(page.items) == 5, f"feed_page_max is 5, so a page asking for 1000 must hold 5; it held {len(page.items)}"
    assert page.next_cursor is not None, "three posts are left, so the page must give a next_cursor"
    assert len(store.feed().items) <= 5, "a page without a limit must not hold more than feed_page_max either"


@exercise("05.2")
def test_the_last_page_has_no_cursor(store: MongoContentStore) -> None:
    for n in range(6):
        store.create_post(1, f"post {n}")
    first = store.feed(limit=3)
    assert first.next_cursor is not None, "six posts in pages of three: the first page must give a next_cursor"
    second = store.feed(cursor=first.next_cursor, limit=3)
    assert len(second.items) == 3, f"the second page must hold the last three posts; it held {len(second.items)}"
    assert second.next_cursor is None, (
        "the second page holds the last post, so next_cursor must be None (fetch one more than the page to know)"
    )


@exercise("05.2")
def test_a_post_written_while_paging_does_not_shift_the_pages(store: MongoContentStore, clock: StoppedClock) -> None:
    old = []
    for n in range(6):
        clock.advance(1)
        old.append(store.create_post(1, f"old {n}"))
    first = store.feed(limit=3)
    clock.advance(1)
    store.create_post(2, "new while you were reading")
    second = store.feed(cursor=first.next_cursor, limit=3)
    want = newest_first(old)[3:]
    assert [post.id for post in second.items] == want, (
        "a post written after page one must not push a post of page one onto page two (that is what OFFSET does)"
    )


@exercise("05.2")
def test_an_authors_feed_holds_only_that_author_on_every_page(store: MongoContentStore) -> None:
    mine = [store.create_post(1 if n % 3 else 2, f"post {n}") for n in range(10)]
    want = newest_first([post for post in mine if post.author_id == 1])
    got = [post.id for post in walk_feed(lambda cursor: store.feed_by_author(1, cursor=cursor, limit=2))]
    assert got == want, f"author 1 has {len(want)} posts; walking the author's feed gave {len(got)} (or another order)"


@exercise("05.2")
def test_comments_page_the_same_way(store: MongoContentStore, clock: StoppedClock) -> None:
    post = store.create_post(1, "a post")
    comments = [store.add_comment(post.id, 2, f"comment {n}") for n in range(5)]  # all in one millisecond
    got = walk_feed(lambda cursor: store.comments_of(post.id, cursor=cursor, limit=2))
    assert sorted(comment.id for comment in got) == sorted(comment.id for comment in comments), (
        "walking the comments page by page must give every comment exactly once"
    )


@exercise("05.2")
def test_a_cursor_or_limit_the_service_did_not_give_is_refused(store: MongoContentStore) -> None:
    store.create_post(1, "a post")
    with pytest.raises(InvalidInput):
        store.feed(cursor="eyJ0IjoibmV2ZXIifQ")
    with pytest.raises(InvalidInput):
        store.feed(limit=0)


# 05.3 — a like counts once -----------------------------------------------------------------------------------


@exercise("05.3")
def test_a_retried_like_is_counted_once(store: MongoContentStore, database: Database[Any]) -> None:
    post = store.create_post(1, "like me")
    first, retry = store.like(post.id, 7), store.like(post.id, 7)
    assert (first, retry) == (True, False), (
        f"the first like adds (True), the retry does not (False); got {first, retry}"
    )
    count = store.get_post(post.id).like_count
    assert count == 1, f"one user liked the post twice (a retry); like_count must be 1, it is {count}"
    assert database.likes.count_documents({}) == 1, "the retry must not store a second like"


@exercise("05.3")
def test_likes_of_different_users_all_count(store: MongoContentStore) -> None:
    post = store.create_post(1, "like me")
    added = [store.like(post.id, user) for user in (7, 8, 9)]
    assert added == [True, True, True], f"three different users each add a like; got {added}"
    count = store.get_post(post.id).like_count
    assert count == 3, f"three users liked the post; like_count must be 3, it is {count}"


@exercise("05.3")
def test_copies_of_one_like_sent_at_the_same_moment_count_once(
    store: MongoContentStore, database: Database[Any]
) -> None:
    post = store.create_post(1, "popular")
    with ThreadPoolExecutor(max_workers=6) as pool:
        added = list(pool.map(lambda _: store.like(post.id, 99), range(6)))  # a client retrying six times at once
    assert added.count(True) == 1, (
        f"of six copies of one like sent at once exactly one adds it; {added.count(True)} did"
    )
    count = store.get_post(post.id).like_count
    assert count == 1, (
        f"six copies of one like sent at once make one like; like_count is {count} "
        "(check for an existing like, then insert, is a race: let the unique index decide)"
    )
    assert database.likes.count_documents({}) == 1, "six copies of one like must store one like"


@exercise("05.3")
def test_a_like_of_a_missing_post_is_not_found_and_stores_nothing(
    store: MongoContentStore, database: Database[Any]
) -> None:
    with pytest.raises(NotFound):
        store.like("0123456789abcdef01234567", 7)
    assert database.likes.count_documents({}) == 0, "a like of a post that does not exist must not be stored"


@exercise("05.3")
def test_indexes_are_there_after_ensure_indexes_even_twice(store: MongoContentStore, database: Database[Any]) -> None:
    again = store.ensure_indexes()  # the fixture called it once already: a restart calls it again
    names = {
        index["name"]: index
        for collection in ("posts", "comments", "likes")
        for index in database[collection].list_indexes()
    }
    missing = [name for name in again if name not in names]
    assert not missing, f"ensure_indexes() returned names that do not exist: {missing}"
    unique = [index for index in database.likes.list_indexes() if index.get("unique")]
    assert unique, "likes needs a unique index on (post_id, user_id): it is what refuses a second like"


# 05.4 — an unlike counts once --------------------------------------------------------------------------------


@exercise("05.4")
def test_unlike_of_a_post_never_liked_changes_nothing(store: MongoContentStore) -> None:
    post = store.create_post(1, "nobody likes me")
    removed = store.unlike(post.id, 7)
    assert removed is False, "there was no like to take back, so unlike must return False"
    count = store.get_post(post.id).like_count
    assert count == 0, f"an unlike of a post never liked must leave like_count at 0; it is {count}"


@exercise("05.4")
def test_a_retried_unlike_is_counted_once(store: MongoContentStore) -> None:
    post = store.create_post(1, "like me")
    store.like(post.id, 7)
    store.like(post.id, 8)
    first, retry = store.unlike(post.id, 7), store.unlike(post.id, 7)
    assert (first, retry) == (True, False), (
        f"the first unlike removes (True), the retry does not (False); got {first, retry}"
    )
    count = store.get_post(post.id).like_count
    assert count == 1, f"two likes, then one unlike sent twice: like_count must be 1, it is {count}"


@exercise("05.4")
def test_like_unlike_like_counts_one(store: MongoContentStore, database: Database[Any]) -> None:
    post = store.create_post(1, "make up your mind")
    steps = [store.like(post.id, 7), store.unlike(post.id, 7), store.like(post.id, 7)]
    assert steps == [True, True, True], f"like, unlike, like: each one changes something; got {steps}"
    count = store.get_post(post.id).like_count
    assert count == 1, f"like, unlike, like leaves one like; like_count is {count}"
    assert database.likes.count_documents({}) == 1, "after like, unlike, like exactly one like must be stored"


# 05.5 — media limits -----------------------------------------------------------------------------------------


@exercise("05.5")
def test_media_over_the_limit_is_refused_and_nothing_is_stored(make_store: MakeStore, database: Database[Any]) -> None:
    store = make_store(max_media_bytes=64 * KIB)
    with pytest.raises(MediaTooLarge):
        store.upload_media(os.urandom(64 * KIB + 1), filename="big.png", content_type="image/png")
    assert stored_media(database) == (0, 0), (
        f"a refused file must leave nothing in GridFS; found (files, chunks) = {stored_media(database)}"
    )


@exercise("05.5")
def test_a_streamed_upload_over_the_limit_leaves_no_partial_file(
    make_store: MakeStore, database: Database[Any]
) -> None:
    store = make_store(max_media_bytes=600 * KIB)
    stream = io.BufferedReader(io.BytesIO(os.urandom(2 * MIB)))  # a stream: its size is unknown until read
    with pytest.raises(MediaTooLarge):
        store.upload_media(stream, filename="video.gif", content_type="image/gif")
    assert stored_media(database) == (0, 0), (
        f"a stream that turned out too large must leave no partial file; found (files, chunks) = {stored_media(database)} "
        "(abort the GridFS upload when you stop)"
    )


class Zeros:
    """A binary stream of `size` zero bytes that never holds them all in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, wanted: int = -1) -> bytes:
        count = self.left if wanted < 0 else min(wanted, self.left)
        self.left -= count
        return bytes(count)


@exercise("05.5")
def test_a_long_stream_over_the_limit_leaves_no_chunks_behind(make_store: MakeStore, database: Database[Any]) -> None:
    # pymongo holds up to about 46 MiB of chunks before it sends them: only a limit above that shows whether
    # the chunks already on the server are cleaned up.
    store = make_store(max_media_bytes=47 * MIB)
    with pytest.raises(MediaTooLarge):
        store.upload_media(Zeros(64 * MIB), filename="long.gif", content_type="image/gif")  # type: ignore[arg-type]
    assert stored_media(database) == (0, 0), (
        f"a stream stopped at the limit left (files, chunks) = {stored_media(database)} in GridFS; "
        "the chunks written before the limit must go too: call abort() on the upload"
    )


@exercise("05.5")
def test_a_content_type_not_allowed_is_refused_and_nothing_is_stored(
    store: MongoContentStore, database: Database[Any]
) -> None:
    with pytest.raises(MediaTypeNotAllowed) as error:
        store.upload_media(b"MZ\x90\x00", filename="cat.png", content_type="application/x-msdownload")
    assert "application/x-msdownload" in str(error.value), (
        f"the error must name the refused type; it said: {error.value}"
    )
    assert stored_media(database) == (0, 0), "a refused file must leave nothing in GridFS"


@exercise("05.5")
def test_a_one_mebibyte_image_round_trips(store: MongoContentStore) -> None:
    payload = os.urandom(MIB)
    ref = store.upload_media(payload, filename="photo.png", content_type="image/png")
    assert ref.length == MIB, f"the stored file must have {MIB} bytes; MediaRef.length says {ref.length}"
    media = store.download_media(ref.id)
    assert media.data == payload, "the downloaded bytes must be exactly the uploaded bytes"
    assert media.content_type == "image/png", (
        f"the content type must come back as image/png, not {media.content_type!r}"
    )


@exercise("05.5")
def test_a_file_of_exactly_the_limit_is_accepted(make_store: MakeStore) -> None:
    store = make_store(max_media_bytes=300 * KIB)
    stream = io.BytesIO(os.urandom(300 * KIB))
    ref = store.upload_media(stream, filename="exact.webp", content_type="image/webp")
    assert store.download_media(ref.id).ref.length == 300 * KIB, "a file of exactly max_media_bytes is allowed"


@exercise("05.5")
def test_an_uploaded_file_can_be_attached_to_a_post(store: MongoContentStore) -> None:
    ref = store.upload_media_by(1, os.urandom(10 * KIB), filename="cat.jpg", content_type="image/jpeg")
    post = store.create_post(1, "my cat", [ref.id])
    assert store.get_post(post.id).media_ids == (ref.id,), "the post must keep the id of its uploaded file"
    with pytest.raises(NotFound):
        store.create_post(1, "a file nobody uploaded", ["0123456789abcdef01234567"])


# Media has an owner (the reference's rule, not an exercise: upload_media_by wraps 05.5) ---------------------------

MISSING_MEDIA = "0123456789abcdef01234567"


def same_answer(error: pytest.ExceptionInfo[NotFound], media_id: str) -> str:
    """An error's message with the media id it names blanked out, to compare two refusals of different ids."""
    return str(error.value).replace(media_id, "<id>")


def test_only_the_uploader_can_attach_a_file_and_a_stranger_hears_that_it_does_not_exist(
    store: MongoContentStore,
) -> None:
    alice, bob = 1, 2
    ref = store.upload_media_by(alice, os.urandom(KIB), filename="cat.png", content_type="image/png")
    with pytest.raises(NotFound) as theirs:
        store.create_post(bob, "look what I found", [ref.id])
    with pytest.raises(NotFound) as unknown:
        store.create_post(bob, "a file nobody uploaded", [MISSING_MEDIA])
    assert same_answer(theirs, ref.id) == same_answer(unknown, MISSING_MEDIA), (
        f"someone else's file must be refused exactly like a file that does not exist; "
        f"got {theirs.value!r} and {unknown.value!r}"
    )
    posted = store.create_post(alice, "my cat", [ref.id])
    assert posted.media_ids == (ref.id,), "the uploader attaches her own file"
    with pytest.raises(NotFound):
        store.create_post(bob, "my cat now", [ref.id])  # in a post everyone reads it; still only she attaches it


def test_media_access_names_the_uploader_and_whether_a_post_carries_the_file(store: MongoContentStore) -> None:
    ref = store.upload_media_by(7, os.urandom(KIB), filename="dog.gif", content_type="image/gif")
    assert store.media_access(ref.id) == MediaAccess(uploader_id=7, attached=False), "uploaded, in no post yet"
    store.create_post(7, "my dog", [ref.id])
    assert store.media_access(ref.id) == MediaAccess(uploader_id=7, attached=True), "uploaded by 7, in a post"
    for missing in (MISSING_MEDIA, "not an id"):
        with pytest.raises(NotFound):
            store.media_access(missing)


def test_a_file_stored_without_an_uploader_belongs_to_nobody(store: MongoContentStore, database: Database[Any]) -> None:
    # upload_media alone records no uploader: like every file stored before uploads recorded one.
    ref = store.upload_media(os.urandom(KIB), filename="old.png", content_type="image/png")
    assert store.media_access(ref.id) == MediaAccess(uploader_id=None, attached=False)
    with pytest.raises(NotFound):
        store.create_post(1, "is it mine?", [ref.id])
    # A post written before the change may carry it: then it is read through that post, by everyone.
    database.posts.insert_one(
        {
            "author_id": 1,
            "text": "old",
            "media_ids": [ObjectId(ref.id)],
            "created_at": datetime.now(UTC),
            "like_count": 0,
        }
    )
    assert store.media_access(ref.id) == MediaAccess(uploader_id=None, attached=True)


def test_an_upload_by_an_invalid_user_is_refused_and_nothing_is_stored(
    store: MongoContentStore, database: Database[Any]
) -> None:
    for uploader in (0, -1, True, {"$ne": 0}):
        with pytest.raises(InvalidInput):
            store.upload_media_by(uploader, b"GIF89a", filename="a.gif", content_type="image/gif")  # type: ignore[arg-type]
    assert stored_media(database) == (0, 0), "a refused uploader must leave nothing in GridFS"


@pytest.mark.parametrize(
    ("caller", "access", "attach", "download"),
    [
        (1, MediaAccess(uploader_id=1, attached=False), True, True),
        (2, MediaAccess(uploader_id=1, attached=False), False, False),
        (1, MediaAccess(uploader_id=1, attached=True), True, True),
        (2, MediaAccess(uploader_id=1, attached=True), False, True),
        (1, MediaAccess(uploader_id=None, attached=False), False, False),
        (1, MediaAccess(uploader_id=None, attached=True), False, True),
    ],
    ids=["own", "stranger's", "own in a post", "stranger's in a post", "nobody's", "nobody's in a post"],
)
def test_who_may_attach_and_download_a_file(caller: int, access: MediaAccess, attach: bool, download: bool) -> None:
    assert may_attach(caller, access.uploader_id) is attach, f"may user {caller} attach {access}? {attach}"
    assert may_download(caller, access) is download, f"may user {caller} download {access}? {download}"


# 05.6 — comment counts by aggregation ------------------------------------------------------------------------


@exercise("05.6")
def test_comment_counts_per_post_with_zero_for_none(store: MongoContentStore) -> None:
    busy, quiet, silent = (store.create_post(1, name) for name in ("busy", "quiet", "silent"))
    for n in range(3):
        store.add_comment(busy.id, 2, f"comment {n}")
    store.add_comment(quiet.id, 3, "just one")
    counts = store.comment_counts([busy.id, quiet.id, silent.id])
    want = {busy.id: 3, quiet.id: 1, silent.id: 0}
    assert counts == want, (
        f"3, 1 and 0 comments; got {sorted(counts.values(), reverse=True)} (a post without comments counts 0)"
    )


@exercise("05.6")
def test_comment_counts_hold_only_the_posts_asked_for(store: MongoContentStore) -> None:
    asked, other = store.create_post(1, "asked"), store.create_post(1, "other")
    store.add_comment(asked.id, 2, "here")
    for n in range(4):
        store.add_comment(other.id, 2, f"elsewhere {n}")
    counts = store.comment_counts([asked.id])
    assert counts == {asked.id: 1}, f"only the post asked about, with its 1 comment; got {counts}"

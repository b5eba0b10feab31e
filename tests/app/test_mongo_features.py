"""The MongoDB features the course uses work through pymongo on the server we run.

On the development machines and in CI that server is FerretDB v1 on SQLite, so this file is the proof that
FerretDB serves the course. With Docker it is MongoDB 7, and the same tests must pass there too.
"""

import os

import gridfs
import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError


def test_insert_find_and_update_with_inc_and_push(mongo: Database) -> None:
    posts = mongo.posts
    post_id = posts.insert_one({"author": "ada", "text": "hello", "likes": 0, "tags": []}).inserted_id
    posts.update_one({"_id": post_id}, {"$inc": {"likes": 2}, "$push": {"tags": "greeting"}})
    posts.update_one({"_id": post_id}, {"$inc": {"likes": 1}, "$push": {"tags": "first"}})
    post = posts.find_one({"_id": post_id})
    assert post is not None
    assert post["likes"] == 3 and post["tags"] == ["greeting", "first"]


def test_a_unique_index_refuses_a_duplicate(mongo: Database) -> None:
    likes = mongo.likes
    likes.create_index([("post_id", ASCENDING), ("user_id", ASCENDING)], unique=True)
    likes.insert_one({"post_id": 1, "user_id": 7})
    likes.insert_one({"post_id": 2, "user_id": 7})
    with pytest.raises(DuplicateKeyError):
        likes.insert_one({"post_id": 1, "user_id": 7})
    assert likes.count_documents({}) == 2


def test_a_compound_index_serves_a_sorted_limited_cursor(mongo: Database) -> None:
    posts = mongo.feed
    posts.create_index([("author", ASCENDING), ("created", DESCENDING)])
    posts.insert_many([{"author": "ada" if n % 2 else "bob", "created": n} for n in range(20)])
    names = {index["name"] for index in posts.list_indexes()}
    assert "author_1_created_-1" in names
    page = list(posts.find({"author": "ada"}, {"_id": 0, "created": 1}).sort("created", DESCENDING).limit(3))
    assert page == [{"created": 19}, {"created": 17}, {"created": 15}]
    # Keyset pagination: the next page starts below the last key seen.
    following = list(posts.find({"author": "ada", "created": {"$lt": 15}}).sort("created", DESCENDING).limit(3))
    assert [post["created"] for post in following] == [13, 11, 9]


def test_aggregation_matches_and_groups_with_sum(mongo: Database) -> None:
    mongo.comments.insert_many([{"post": post, "words": words} for post, words in [(1, 3), (1, 4), (2, 10), (3, 1)]])

    def totals(accumulator: object) -> list[dict[str, object]]:
        # One accumulator per $group: FerretDB v1.24 returns 0 for every accumulator after the first.
        pipeline = [
            {"$match": {"post": {"$in": [1, 2]}}},
            {"$group": {"_id": "$post", "total": {"$sum": accumulator}}},
            {"$sort": {"_id": 1}},
        ]
        return list(mongo.comments.aggregate(pipeline))

    assert totals(1) == [{"_id": 1, "total": 2}, {"_id": 2, "total": 1}], "comments per post"
    assert totals("$words") == [{"_id": 1, "total": 7}, {"_id": 2, "total": 10}], "words per post"


def test_find_one_and_update_returns_the_new_document(mongo: Database) -> None:
    mongo.counters.insert_one({"_id": "posts", "value": 41})
    after = mongo.counters.find_one_and_update(
        {"_id": "posts"}, {"$inc": {"value": 1}}, return_document=ReturnDocument.AFTER
    )
    assert after == {"_id": "posts", "value": 42}


def test_gridfs_round_trips_a_one_mebibyte_file(mongo: Database) -> None:
    files = gridfs.GridFS(mongo, collection="media")
    payload = os.urandom(1024 * 1024)
    file_id = files.put(payload, filename="photo.jpg", content_type="image/jpeg")
    stored = files.get(file_id)
    assert stored.length == len(payload) and stored.filename == "photo.jpg"
    assert stored.read() == payload
    files.delete(file_id)
    assert not files.exists(file_id)


def test_creating_existing_indexes_again_one_per_command_is_safe(mongo: Database) -> None:
    # FerretDB v1.24.2 drops the connection when ONE createIndexes names several existing indexes; one per command works.
    models = [
        IndexModel([("author", ASCENDING)], name="by_author"),
        IndexModel([("created", DESCENDING)], name="by_created"),
    ]
    for _ in range(2):
        names = [mongo.posts.create_indexes([model])[0] for model in models]
        assert names == ["by_author", "by_created"]

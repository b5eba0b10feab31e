"""Every rule of the SQL schema, broken once against a real, freshly migrated PostgreSQL database.

Each test expects psycopg's exception for that kind of rule AND the name of the constraint or index that
refused the row, so a test cannot pass because some other rule happened to fire first.
The migrated database is made once for this module; every test runs inside a transaction that is rolled back.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from reference_app.config import Settings
from reference_app.db import apply_migrations, load_migrations
from workbook.databases import throwaway_database

EXPECTED_TABLES = {
    "auth.users",
    "auth.sessions",
    "chat.private_chats",
    "chat.messages",
    "chat.read_state",
    "chat.outbox",
    "notify.notifications",
    "public.schema_migrations",
}


@pytest.fixture
def empty_url(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings.postgres.url, f"schema_test_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture(scope="module")
def migrated_url(settings: Settings) -> Iterator[str]:
    with throwaway_database(settings.postgres.url, f"schema_test_{uuid.uuid4().hex[:12]}") as url:
        apply_migrations(url)
        yield url


@pytest.fixture
def db(migrated_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose work is rolled back at the end: each test sees the empty, migrated schema."""
    with psycopg.connect(migrated_url, autocommit=True) as connection, connection.transaction(force_rollback=True):
        yield connection


def refused(db: psycopg.Connection[Any], error: type[psycopg.Error], constraint: str, query: str, *params: Any) -> None:
    """Run one statement that must be refused by `constraint`; the surrounding test goes on afterwards."""
    with pytest.raises(error) as caught, db.transaction():
        db.execute(query, params)
    got = caught.value.diag.constraint_name
    assert got == constraint, f"expected {constraint} to refuse the row; {got} did: {caught.value}"


def add_user(db: psycopg.Connection[Any], username: str, email: str | None = None) -> int:
    row = db.execute(
        "INSERT INTO auth.users (username, email, password_hash) VALUES (%s, %s, 'x') RETURNING id",
        (username, email or f"{username}@example.org"),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_chat(db: psycopg.Connection[Any], low: int = 1, high: int = 2) -> int:
    row = db.execute(
        "INSERT INTO chat.private_chats (user_low, user_high) VALUES (%s, %s) RETURNING id", (low, high)
    ).fetchone()
    assert row is not None
    return int(row[0])


SEND = "INSERT INTO chat.messages (chat_id, seq, sender_id, client_message_id, body) VALUES (%s, %s, %s, %s, %s)"


def send(db: psycopg.Connection[Any], chat: int, seq: int, body: str = "hi", sender: int = 1) -> None:
    db.execute(SEND, (chat, seq, sender, uuid.uuid4(), body))


# Migrations ----------------------------------------------------------------------------------------------------


def test_migrations_from_empty_create_exactly_the_expected_tables(empty_url: str) -> None:
    assert apply_migrations(empty_url) == [migration.file_name for migration in load_migrations()]
    with psycopg.connect(empty_url) as connection:
        rows = connection.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    assert {name for (name,) in rows} == EXPECTED_TABLES


def test_running_the_migrations_again_is_a_no_op(empty_url: str) -> None:
    apply_migrations(empty_url)
    assert apply_migrations(empty_url) == []
    with psycopg.connect(empty_url) as connection:
        recorded = connection.execute("SELECT version FROM public.schema_migrations ORDER BY version").fetchall()
    assert recorded == [("0001",), ("0002",), ("0003",), ("0004",), ("0005",)]


def test_the_designed_indexes_exist(db: psycopg.Connection[Any]) -> None:
    rows = db.execute("SELECT indexname FROM pg_indexes WHERE schemaname IN ('auth', 'chat', 'notify')").fetchall()
    names = {name for (name,) in rows}
    designed = {
        "users_username_key",
        "users_email_key",
        "sessions_user_idx",
        "sessions_family_idx",
        "private_chats_pair_key",
        "private_chats_user_high_idx",
        "messages_chat_seq_key",
        "messages_client_message_key",
        "outbox_unpublished_idx",
        "notifications_user_event_key",
        "notifications_user_newest_idx",
    }
    assert designed <= names, f"missing indexes: {designed - names}"


# auth.users ------------------------------------------------------------------------------------------------


def test_username_is_unique(db: psycopg.Connection[Any]) -> None:
    add_user(db, "ada", "ada@example.org")
    refused(
        db,
        errors.UniqueViolation,
        "users_username_key",
        "INSERT INTO auth.users (username, email, password_hash) VALUES ('ada', 'other@example.org', 'x')",
    )


def test_email_is_unique_whatever_its_case(db: psycopg.Connection[Any]) -> None:
    add_user(db, "ada", "Ada@Example.org")
    refused(
        db,
        errors.UniqueViolation,
        "users_email_key",
        "INSERT INTO auth.users (username, email, password_hash) VALUES ('ada2', 'ada@example.ORG', 'x')",
    )


@pytest.mark.parametrize("username", ["Ada", "ab", "a" * 33, "ada lovelace", "ada-l", ""])
def test_username_format(db: psycopg.Connection[Any], username: str) -> None:
    refused(
        db,
        errors.CheckViolation,
        "users_username_format",
        "INSERT INTO auth.users (username, email, password_hash) VALUES (%s, 'a@example.org', 'x')",
        username,
    )


def test_username_format_accepts_the_edges(db: psycopg.Connection[Any]) -> None:
    add_user(db, "a_1")
    add_user(db, "z" * 32)


@pytest.mark.parametrize("email", ["no-at-sign", "two@@example.org", "a b@example.org", "@example.org", "ada@"])
def test_email_format(db: psycopg.Connection[Any], email: str) -> None:
    refused(
        db,
        errors.CheckViolation,
        "users_email_format",
        "INSERT INTO auth.users (username, email, password_hash) VALUES ('ada', %s, 'x')",
        email,
    )


def test_email_longer_than_254_characters_is_refused(db: psycopg.Connection[Any]) -> None:
    refused(
        db,
        errors.CheckViolation,
        "users_email_format",
        "INSERT INTO auth.users (username, email, password_hash) VALUES ('ada', %s, 'x')",
        "a" * 243 + "@example.org",  # 255 characters
    )
    add_user(db, "bob", "b" * 242 + "@example.org")  # 254 characters


def test_display_name_is_at_most_64_characters(db: psycopg.Connection[Any]) -> None:
    refused(
        db,
        errors.CheckViolation,
        "users_display_name_length",
        "INSERT INTO auth.users (username, email, display_name, password_hash) VALUES ('ada', 'a@b.org', %s, 'x')",
        "d" * 65,
    )


# auth.sessions ---------------------------------------------------------------------------------------------

NEW_SESSION = (
    "INSERT INTO auth.sessions (id, user_id, family_id, token_hash, created_at, expires_at)"
    " VALUES (gen_random_uuid(), %s, gen_random_uuid(), %s, now(), now() + %s::interval)"
)


def test_a_session_expires_after_it_was_created(db: psycopg.Connection[Any]) -> None:
    user = add_user(db, "ada")
    refused(db, errors.CheckViolation, "sessions_expire_after_creation", NEW_SESSION, user, b"t1", "-1 second")
    refused(db, errors.CheckViolation, "sessions_expire_after_creation", NEW_SESSION, user, b"t2", "0 seconds")


def test_a_token_hash_belongs_to_one_session(db: psycopg.Connection[Any]) -> None:
    user = add_user(db, "ada")
    db.execute(NEW_SESSION, (user, b"same", "1 day"))
    refused(db, errors.UniqueViolation, "sessions_token_hash_key", NEW_SESSION, user, b"same", "1 day")


def test_a_session_needs_an_existing_user_and_goes_with_it(db: psycopg.Connection[Any]) -> None:
    refused(db, errors.ForeignKeyViolation, "sessions_user_id_fkey", NEW_SESSION, 999_999, b"t", "1 day")
    user = add_user(db, "ada")
    db.execute(NEW_SESSION, (user, b"t", "1 day"))
    db.execute("DELETE FROM auth.users WHERE id = %s", (user,))
    left = db.execute("SELECT count(*) FROM auth.sessions").fetchone()
    assert left == (0,), "ON DELETE CASCADE removes the sessions of a deleted user"


# chat.private_chats ----------------------------------------------------------------------------------------

NEW_CHAT = "INSERT INTO chat.private_chats (user_low, user_high) VALUES (%s, %s)"


def test_the_pair_is_stored_in_order(db: psycopg.Connection[Any]) -> None:
    refused(db, errors.CheckViolation, "private_chats_ordered_pair", NEW_CHAT, 2, 1)


def test_a_chat_with_oneself_is_refused(db: psycopg.Connection[Any]) -> None:
    refused(db, errors.CheckViolation, "private_chats_ordered_pair", NEW_CHAT, 7, 7)


def test_one_chat_per_pair(db: psycopg.Connection[Any]) -> None:
    add_chat(db, 1, 2)
    refused(db, errors.UniqueViolation, "private_chats_pair_key", NEW_CHAT, 1, 2)


def test_last_seq_is_not_negative(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    refused(
        db,
        errors.CheckViolation,
        "private_chats_last_seq_not_negative",
        "UPDATE chat.private_chats SET last_seq = -1 WHERE id = %s",
        chat,
    )


# chat.messages ---------------------------------------------------------------------------------------------


def test_an_empty_body_is_refused(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    refused(db, errors.CheckViolation, "messages_body_length", SEND, chat, 1, 1, uuid.uuid4(), "")


def test_a_body_of_4001_characters_is_refused_and_4000_accepted(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    refused(db, errors.CheckViolation, "messages_body_length", SEND, chat, 1, 1, uuid.uuid4(), "x" * 4001)
    send(db, chat, 1, "x" * 4000)
    send(db, chat, 2, "é" * 4000)  # characters, not bytes: 8000 bytes in UTF-8


def test_a_null_body_is_refused(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    with pytest.raises(errors.NotNullViolation), db.transaction():
        db.execute(SEND, (chat, 1, 1, uuid.uuid4(), None))


def test_a_deleted_message_must_have_an_empty_body(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    send(db, chat, 1, "secret")
    refused(
        db, errors.CheckViolation, "messages_body_length", "UPDATE chat.messages SET deleted_at = now() WHERE seq = 1"
    )
    db.execute("UPDATE chat.messages SET deleted_at = now(), body = '' WHERE seq = 1")


def test_one_message_per_place_in_a_chat(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    send(db, chat, 1)
    refused(db, errors.UniqueViolation, "messages_chat_seq_key", SEND, chat, 1, 2, uuid.uuid4(), "again")


def test_a_client_message_id_is_used_once_per_sender_and_chat(db: psycopg.Connection[Any]) -> None:
    chat, other_chat = add_chat(db, 1, 2), add_chat(db, 1, 3)
    client_id = uuid.uuid4()
    db.execute(SEND, (chat, 1, 1, client_id, "hi"))
    refused(db, errors.UniqueViolation, "messages_client_message_key", SEND, chat, 2, 1, client_id, "hi")
    db.execute(SEND, (chat, 2, 2, client_id, "the other sender may reuse it"))
    db.execute(SEND, (other_chat, 1, 1, client_id, "so may another chat"))


@pytest.mark.parametrize("seq", [0, -1])
def test_seq_is_positive(db: psycopg.Connection[Any], seq: int) -> None:
    chat = add_chat(db)
    refused(db, errors.CheckViolation, "messages_seq_positive", SEND, chat, seq, 1, uuid.uuid4(), "hi")


def test_a_message_needs_an_existing_chat(db: psycopg.Connection[Any]) -> None:
    refused(db, errors.ForeignKeyViolation, "messages_chat_id_fkey", SEND, 999_999, 1, 1, uuid.uuid4(), "hi")


# chat.read_state and chat.outbox ---------------------------------------------------------------------------

MARK_READ = "INSERT INTO chat.read_state (chat_id, user_id, last_read_seq) VALUES (%s, %s, %s)"


def test_last_read_seq_is_not_negative(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    refused(db, errors.CheckViolation, "read_state_seq_not_negative", MARK_READ, chat, 1, -1)


def test_one_read_state_per_user_and_chat(db: psycopg.Connection[Any]) -> None:
    chat = add_chat(db)
    db.execute(MARK_READ, (chat, 1, 0))
    refused(db, errors.UniqueViolation, "read_state_pkey", MARK_READ, chat, 1, 3)
    refused(db, errors.ForeignKeyViolation, "read_state_chat_id_fkey", MARK_READ, 999_999, 1, 0)


def test_an_event_id_is_written_once(db: psycopg.Connection[Any]) -> None:
    event = "INSERT INTO chat.outbox (event_id, topic, payload) VALUES (%s, 'message.created', '{}')"
    event_id = uuid.uuid4()
    db.execute(event, (event_id,))
    refused(db, errors.UniqueViolation, "outbox_event_id_key", event, event_id)


# notify.notifications --------------------------------------------------------------------------------------

NOTIFY = "INSERT INTO notify.notifications (user_id, event_id, chat_id, seq, preview) VALUES (%s, %s, %s, %s, %s)"


def test_one_notification_per_user_and_event(db: psycopg.Connection[Any]) -> None:
    event_id = uuid.uuid4()
    db.execute(NOTIFY, (2, event_id, 1, 1, "hi"))
    refused(db, errors.UniqueViolation, "notifications_user_event_key", NOTIFY, 2, event_id, 1, 1, "hi again")
    db.execute(NOTIFY, (3, event_id, 1, 1, "another user may be told of the same event"))


def test_a_notification_is_about_a_real_place_with_a_short_preview(db: psycopg.Connection[Any]) -> None:
    refused(db, errors.CheckViolation, "notifications_seq_positive", NOTIFY, 2, uuid.uuid4(), 1, 0, "hi")
    refused(db, errors.CheckViolation, "notifications_preview_length", NOTIFY, 2, uuid.uuid4(), 1, 1, "x" * 101)
    db.execute(NOTIFY, (2, uuid.uuid4(), 1, 1, "x" * 100))

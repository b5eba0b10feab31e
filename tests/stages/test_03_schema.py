"""Stage 03 — the schema and its migrations. These tests grade the exercises of stage 03 in whichever app root is
mounted as `app`."""

import threading
from pathlib import Path

import psycopg
import pytest
from app.db import Migration, MigrationError, apply_migrations, load_migrations, pending_migrations

exercise = pytest.mark.exercise
APP_FILES = ["0001_auth.sql", "0002_chat.sql", "0003_notifications.sql", "0004_outbox_notify.sql", "0005_replies.sql"]
APP_TABLES = {
    "auth.users",
    "auth.sessions",
    "chat.private_chats",
    "chat.messages",
    "chat.read_state",
    "chat.outbox",
    "notify.notifications",
}


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return {name for (name,) in rows}


def recorded(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as connection:
        exists = connection.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = connection.execute("SELECT version, name, checksum FROM public.schema_migrations ORDER BY version")
        return [(str(version), str(name), str(checksum)) for version, name, checksum in rows.fetchall()]


def migration(version: str, name: str, text: str) -> Migration:
    return Migration(version=version, name=name, sql=text)


# 03.1 — read the migration files in version order -------------------------------------------------------------


@exercise("03.1")
def test_files_load_in_version_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "0010_tenth.sql": "SELECT 10;",
            "0002_second.sql": "SELECT 2;",
            "0001_first.sql": "SELECT 1;",
            "README.md": "not a migration",
        },
    )
    got = load_migrations(tmp_path)
    assert [m.version for m in got] == ["0001", "0002", "0010"], (
        f"migrations come in version order, and only .sql files count; got versions {[m.version for m in got]}"
    )
    assert [m.name for m in got] == ["first", "second", "tenth"], f"the name is the part after NNNN_; got {got}"
    assert got[1].sql == "SELECT 2;", "each Migration carries the text of its own file"


@exercise("03.1")
def test_the_app_migrations_load(tmp_path: Path) -> None:
    got = load_migrations()
    assert [m.file_name for m in got] == APP_FILES, (
        f"with no directory given, load the app's own migrations/ folder; got {[m.file_name for m in got]}"
    )
    assert "CREATE TABLE auth.users" in got[0].sql, "0001_auth.sql's Migration must hold that file's SQL"
    assert load_migrations(tmp_path) == [], "an empty folder has no migrations"


@exercise("03.1")
@pytest.mark.parametrize("bad_name", ["1_first.sql", "0001-first.sql", "0001_First.sql", "0001_.sql", "first.sql"])
def test_a_badly_named_file_is_refused(tmp_path: Path, bad_name: str) -> None:
    write(tmp_path, {"0001_ok.sql": "SELECT 1;", bad_name: "SELECT 2;"})
    with pytest.raises(MigrationError) as error:
        load_migrations(tmp_path)
    assert bad_name in str(error.value), f"the error must name the file {bad_name}; it said: {error.value}"


@exercise("03.1")
def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {"0001_users.sql": "SELECT 1;", "0002_chats.sql": "SELECT 2;", "0002_posts.sql": "SELECT 3;"})
    with pytest.raises(MigrationError) as error:
        load_migrations(tmp_path)
    message = str(error.value)
    assert "0002_chats.sql" in message and "0002_posts.sql" in message, (
        f"two files with version 0002: the error must name both; it said: {message}"
    )


# 03.2 — decide what is left to apply -------------------------------------------------------------------------

FIRST = migration("0001", "first", "CREATE TABLE a (id int);")
SECOND = migration("0002", "second", "CREATE TABLE b (id int);")
THIRD = migration("0003", "third", "CREATE TABLE c (id int);")


@exercise("03.2")
def test_nothing_applied_means_everything_is_pending() -> None:
    got = pending_migrations([FIRST, SECOND, THIRD], {})
    assert got == [FIRST, SECOND, THIRD], f"on an empty database every migration is pending, in order; got {got}"


@exercise("03.2")
def test_everything_applied_means_nothing_is_pending() -> None:
    applied = {m.version: m.checksum for m in (FIRST, SECOND, THIRD)}
    got = pending_migrations([FIRST, SECOND, THIRD], applied)
    assert got == [], f"every version is recorded with its checksum: nothing is left; got {got}"


@exercise("03.2")
def test_only_the_new_files_are_pending() -> None:
    applied = {FIRST.version: FIRST.checksum}
    got = pending_migrations([FIRST, SECOND, THIRD], applied)
    assert got == [SECOND, THIRD], f"0001 is applied, so 0002 and 0003 are left, in order; got {got}"


@exercise("03.2")
def test_a_file_changed_after_it_was_applied_is_refused() -> None:
    edited = migration("0001", "first", "CREATE TABLE a (id bigint);")
    with pytest.raises(MigrationError) as error:
        pending_migrations([edited, SECOND], {FIRST.version: FIRST.checksum})
    assert "0001_first.sql" in str(error.value), (
        f"0001_first.sql's checksum differs from the recorded one: the error must name the file; it said: {error.value}"
    )


@exercise("03.2")
def test_an_applied_migration_whose_file_is_gone_is_refused() -> None:
    applied = {FIRST.version: FIRST.checksum, SECOND.version: SECOND.checksum}
    with pytest.raises(MigrationError) as error:
        pending_migrations([FIRST, THIRD], applied)
    assert "0002" in str(error.value), (
        f"0002 was applied but its file is missing: the error must name version 0002; it said: {error.value}"
    )


# 03.3 — apply each pending migration, all or nothing per file ---------------------------------------------------


@exercise("03.3")
def test_every_file_is_applied_and_recorded(empty_postgres_url: str) -> None:
    got = apply_migrations(empty_postgres_url)
    assert got == APP_FILES, f"an empty database gets every file, in order, and their names are returned; got {got}"
    missing = APP_TABLES - tables(empty_postgres_url)
    assert not missing, f"after the migrations these tables must exist: {sorted(missing)}"
    want = [(m.version, m.name, m.checksum) for m in load_migrations()]
    assert recorded(empty_postgres_url) == want, (
        "public.schema_migrations holds one row per applied file: version, name and the checksum of its text"
    )


@exercise("03.3")
def test_a_second_run_applies_nothing(empty_postgres_url: str) -> None:
    apply_migrations(empty_postgres_url)
    again = apply_migrations(empty_postgres_url)
    assert again == [], f"a second run finds everything recorded and returns []; got {again}"
    assert len(recorded(empty_postgres_url)) == len(APP_FILES), "a second run records nothing new"


@exercise("03.3")
def test_a_broken_file_leaves_no_table_and_no_record(empty_postgres_url: str, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "0001_good.sql": "CREATE TABLE good (id int);",
            "0002_broken.sql": "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;",
        },
    )
    with pytest.raises((psycopg.Error, MigrationError)):
        apply_migrations(empty_postgres_url, tmp_path)
    present = tables(empty_postgres_url)
    assert "public.half_done" not in present, (
        "0002_broken.sql failed half-way: its first statement must be rolled back too (one transaction per file)"
    )
    assert "public.good" in present, "0001_good.sql succeeded before the broken file: it stays applied"
    versions = [version for version, _name, _checksum in recorded(empty_postgres_url)]
    assert versions == ["0001"], f"only the file that succeeded is recorded; got versions {versions}"


@exercise("03.3")
def test_a_fixed_file_is_applied_on_the_next_run(empty_postgres_url: str, tmp_path: Path) -> None:
    write(tmp_path, {"0001_good.sql": "CREATE TABLE good (id int);", "0002_next.sql": "SELECT * FROM no_such_table;"})
    with pytest.raises((psycopg.Error, MigrationError)):
        apply_migrations(empty_postgres_url, tmp_path)
    write(tmp_path, {"0002_next.sql": "CREATE TABLE next (id int);"})
    got = apply_migrations(empty_postgres_url, tmp_path)
    assert got == ["0002_next.sql"], f"after the fix only the file that failed is applied; got {got}"


@exercise("03.3")
def test_two_runners_at_once_apply_each_file_once(empty_postgres_url: str) -> None:
    start = threading.Barrier(3)
    applied: list[str] = []
    failures: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            applied.extend(apply_migrations(empty_postgres_url))
        except BaseException as error:
            failures.append(error)

    runners = [threading.Thread(target=run) for _ in range(3)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=120)
    assert not failures, f"three runners at once must queue, not fail; one raised: {failures[0]!r}"
    assert sorted(applied) == APP_FILES, f"each file is applied exactly once in all; the runners applied {applied}"
    assert len(recorded(empty_postgres_url)) == len(APP_FILES), "each file is recorded exactly once"


@exercise("03.2")
@exercise("03.3")
def test_a_migration_edited_after_it_was_applied_stops_the_run(empty_postgres_url: str, tmp_path: Path) -> None:
    write(tmp_path, {"0001_first.sql": "CREATE TABLE first (id int);"})
    apply_migrations(empty_postgres_url, tmp_path)
    write(
        tmp_path, {"0001_first.sql": "CREATE TABLE first (id bigint);", "0002_more.sql": "CREATE TABLE more (x int);"}
    )
    with pytest.raises(MigrationError) as error:
        apply_migrations(empty_postgres_url, tmp_path)
    assert "0001_first.sql" in str(error.value), f"the error must name the edited file; it said: {error.value}"
    assert "public.more" not in tables(empty_postgres_url), "nothing is applied once the files no longer match"

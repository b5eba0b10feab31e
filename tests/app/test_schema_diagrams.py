"""The committed diagrams match their DBML, and the DBML keeps the rules of the SQL migrations.

Each schema/*.dbml is rendered again with the pinned renderer (schema/package.json) and compared byte for byte
with the committed SVG, so a DBML edit without `make schema` is caught here. A missing renderer FAILS: it is
installed by `cd schema && npm ci`, never silently skipped.
"""

import re
import subprocess
from pathlib import Path

import pytest

from workbook.paths import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "schema"
RENDERER = SCHEMA_DIR / "node_modules" / ".bin" / "dbml-renderer"
MIGRATIONS_DIR = REPO_ROOT / "reference_app" / "db" / "migrations"
DIAGRAMS = sorted(SCHEMA_DIR.glob("*.dbml"))
# `ref: > schema.table.column` written inside a column's settings.
INLINE_REF = re.compile(r"ref:\s*[<>-]+\s*(?P<target>[\w.]+)")
TABLE = re.compile(r"^Table\s+(?P<name>[\w.]+)", re.MULTILINE)


def render(source: Path, target: Path) -> None:
    if not RENDERER.exists():
        pytest.fail(f"the DBML renderer is not installed ({RENDERER.relative_to(REPO_ROOT)}). Fix: cd schema && npm ci")
    done = subprocess.run(
        [str(RENDERER), "--input", str(source), "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"dbml-renderer refused {source.name}: {done.stderr.strip()}"


def test_both_diagrams_exist() -> None:
    assert [path.name for path in DIAGRAMS] == ["messenger.dbml", "services.dbml"], (
        f"schema/ holds the whole-system and the by-service diagram; found {[path.name for path in DIAGRAMS]}"
    )


@pytest.mark.parametrize("source", DIAGRAMS, ids=lambda path: path.name)
def test_committed_svg_is_up_to_date(source: Path, tmp_path: Path) -> None:
    committed = source.with_suffix(".svg")
    fresh = tmp_path / committed.name
    render(source, fresh)
    assert committed.exists(), f"schema/{committed.name} is missing: run make schema"
    assert committed.read_bytes() == fresh.read_bytes(), f"schema/{committed.name} is out of date: run make schema"


def test_services_diagram_has_no_reference_across_a_service_boundary() -> None:
    text = (SCHEMA_DIR / "services.dbml").read_text(encoding="utf-8")
    crossing = []
    for block in re.split(r"(?m)^(?=Table )", text):
        table = TABLE.match(block)
        if table is None:
            continue
        owner = table["name"].split(".")[0]
        assert owner in {"auth", "chat", "notify", "content"}, (
            f"{table['name']}: every table belongs to a service schema"
        )
        targets = [ref["target"] for ref in INLINE_REF.finditer(block)]
        crossing += [f"{table['name']} -> {target}" for target in targets if target.split(".")[0] != owner]
    assert "\nRef" not in text, "write references inline (ref: > ...) so this test can see them"
    assert not crossing, f"a foreign key crosses a service boundary: {crossing}"


def test_each_sql_key_and_index_is_in_both_diagrams() -> None:
    sql = "".join(path.read_text(encoding="utf-8") for path in sorted(MIGRATIONS_DIR.glob("*.sql")))
    indexes = set(re.findall(r"CREATE (?:UNIQUE )?INDEX (\w+)", sql))
    names = indexes | set(re.findall(r"CONSTRAINT (\w+_key) UNIQUE", sql))
    assert names, "found no index in the migrations: did their location change?"
    for source in DIAGRAMS:
        text = source.read_text(encoding="utf-8")
        missing = sorted(name for name in names if f"'{name}'" not in text)
        assert not missing, f"{source.name} lacks these indexes of the SQL: {missing}"


def test_each_sql_check_is_in_both_diagrams() -> None:
    # The check expressions as the DBML writes them; the SQL is the source of truth for their meaning.
    checks = [
        "username ~ '^[a-z0-9_]{3,32}$'",
        "char_length(email) <= 254",
        "char_length(display_name) <= 64",
        "expires_at > created_at",
        "user_low < user_high",
        "last_seq >= 0",
        "seq > 0",
        "char_length(body) BETWEEN 1 AND 4000",
        "deleted_at IS NOT NULL AND body = ''",
        "last_read_seq >= 0",
        "char_length(preview) <= 100",
        "reply_to_seq > 0 AND reply_to_seq < seq",
    ]
    sql = "".join(path.read_text(encoding="utf-8") for path in sorted(MIGRATIONS_DIR.glob("*.sql")))
    assert all(check in sql for check in checks), "a check listed here is no longer in the SQL migrations"
    for source in DIAGRAMS:
        text = source.read_text(encoding="utf-8")
        missing = [check for check in checks if check not in text]
        assert not missing, f"{source.name} lacks these checks of the SQL: {missing}"

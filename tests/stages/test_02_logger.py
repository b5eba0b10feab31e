"""Stage 02 — the logger. These tests grade the exercises of stage 02 in whichever app root is mounted as `app`."""

import asyncio
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from app.config import load_settings
from app.config.settings import LogSettings
from app.logger import configure_logging, request_context
from loguru import logger

exercise = pytest.mark.exercise
JSON_FIELDS = ["time", "level", "message", "logger", "request_id", "extra"]
NOTHING_WRITTEN = "no line was written (if your code raised inside the sink, loguru printed the error to stderr)"

Capture = Callable[..., io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """configure_logging(...) into a string buffer; puts logging back the way it was afterwards."""

    def configure(service: str = "stage-test", **settings: Any) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(LogSettings(**settings), service=service, stream=stream)
        return stream

    yield configure
    logger.remove()
    logging.basicConfig(handlers=[], force=True)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, NOTHING_WRITTEN
    try:
        return [json.loads(line) for line in lines]
    except json.JSONDecodeError as error:
        raise AssertionError(f"every line must be one JSON object; this one is not: {error.doc!r}") from None


# 02.1 — the shape of a JSON line -----------------------------------------------------------------------------


@exercise("02.1")
def test_compact_json_has_exactly_the_six_fields_in_order(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    logger.bind(user_id=7).info("user {} logged in", "ada")
    [line] = json_lines(stream)
    assert list(line) == JSON_FIELDS, (
        f"a compact JSON line has exactly these fields in this order: {JSON_FIELDS}; got {list(line)}"
    )
    assert line["level"] == "INFO" and line["message"] == "user ada logged in"
    assert line["logger"] == __name__, f"'logger' is the module that logged ({__name__}); got {line['logger']!r}"
    assert line["request_id"] is None, "outside a request, request_id is null"
    assert line["extra"] == {"service": "stage-test", "user_id": 7}, (
        f"'extra' holds the bound values; got {line['extra']}"
    )
    assert datetime.fromisoformat(line["time"]).tzinfo is not None, "time is ISO 8601 with its time zone"


@exercise("02.1")
def test_full_json_adds_the_source_line_and_process(capture: Capture) -> None:
    stream = capture(level="DEBUG", format="json")
    logger.debug("where am I?")
    [line] = json_lines(stream)
    assert list(line)[:6] == JSON_FIELDS, f"the six fields come first, in order; got {list(line)}"
    assert line["source"].startswith(__file__) and line["source"].rsplit(":", 1)[1].isdigit(), (
        f"'source' is 'path:line' of the logging call; got {line.get('source')!r}"
    )
    assert line["process"] == os.getpid(), "'process' is the id of the process that logged"


@exercise("02.1")
def test_an_exception_travels_with_its_traceback(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    [line] = json_lines(stream)
    assert "Traceback" in line.get("exception", "") and "KeyError" in line["exception"], (
        "a logged exception adds an 'exception' field holding the traceback"
    )


# 02.2 — one sink per environment -----------------------------------------------------------------------------


@exercise("02.2")
def test_text_format_is_coloured_human_text(capture: Capture) -> None:
    stream = capture(level="DEBUG", format="text", colour=True)
    logger.debug("hello, person")
    output = stream.getvalue()
    assert "hello, person" in output, NOTHING_WRITTEN
    assert "\x1b[" in output, "local logs are coloured: the text must carry ANSI colour codes"
    assert not output.lstrip().startswith("{"), "text format is for people, not JSON"


@exercise("02.2")
def test_the_level_drops_quieter_lines(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    logger.debug("too quiet")
    logger.info("loud enough")
    assert [line["message"] for line in json_lines(stream)] == ["loud enough"], "at INFO a DEBUG line is dropped"


@exercise("02.2")
def test_configuring_twice_does_not_write_twice(capture: Capture) -> None:
    capture(level="INFO", format="json-compact")
    stream = capture(level="INFO", format="json-compact")
    logger.info("once")
    assert len(json_lines(stream)) == 1, "after a second configure_logging a line must be written once, not twice"


@exercise("02.2")
@pytest.mark.parametrize(
    ("environment", "debug_shown", "shape"),
    [("local", True, "text"), ("dev", True, "full json"), ("prod", False, "compact json")],
)
def test_each_environment_gets_its_logger(
    capture: Capture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    environment: str,
    debug_shown: bool,
    shape: str,
) -> None:
    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("APP_ENV", environment)
    monkeypatch.setenv("APP_JWT__SIGNING_KEY", "test-only")
    stream = capture(**load_settings().log.model_dump())
    logger.debug("a debug line")
    logger.info("an info line")
    output = stream.getvalue()
    assert ("a debug line" in output) == debug_shown, (
        f"{environment}: DEBUG lines {'shown' if debug_shown else 'hidden'}"
    )
    if shape == "text":
        assert "an info line" in output and not output.startswith("{"), f"{environment}: human-readable text"
    else:
        lines = json_lines(stream)
        assert ("source" in lines[-1]) == (shape == "full json"), f"{environment}: {shape}"


# 02.3 — the standard library goes through the same logger ----------------------------------------------------


@exercise("02.3")
def test_a_standard_library_record_arrives_with_its_logger_name(capture: Capture) -> None:
    stream = capture(level="DEBUG", format="json-compact")
    logging.getLogger("some.library").warning("disk %s%% full", 93)
    [line] = json_lines(stream)
    assert line["logger"] == "some.library", f"'logger' keeps the standard logger's name; got {line['logger']!r}"
    assert line["message"] == "disk 93% full" and line["level"] == "WARNING"


@exercise("02.3")
def test_uvicorn_logs_arrive_once_even_after_uvicorn_configured_itself(capture: Capture) -> None:
    # uvicorn attaches handlers of its own when it starts; ours must take over from them.
    uvicorn.Config(app="tests:missing").configure_logging()
    stream = capture(level="INFO", format="json-compact")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
    lines = json_lines(stream)
    assert [line["logger"] for line in lines] == ["uvicorn.error", "uvicorn.access"], (
        f"each uvicorn line arrives once, through our logger; got {[(line['logger'], line['message']) for line in lines]}"
    )


@exercise("02.3")
def test_a_standard_library_exception_keeps_its_traceback(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    try:
        int("not a number")
    except ValueError:
        logging.getLogger("some.library").exception("parse failed")
    [line] = json_lines(stream)
    assert "ValueError" in line.get("exception", ""), "the library's traceback must travel with the line"


@exercise("02.3")
def test_a_standard_library_record_points_at_its_caller(capture: Capture) -> None:
    stream = capture(level="INFO", format="json")
    logging.getLogger("some.library").info("from here")
    [line] = json_lines(stream)
    assert line["source"].startswith(__file__), (
        f"'source' is the line that called logging, not the handler; got {line['source']}"
    )


# 02.4 — request ids ------------------------------------------------------------------------------------------


@exercise("02.4")
def test_every_line_inside_a_request_carries_its_id(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    with request_context("req-42") as request_id:
        logger.info("from loguru")
        logging.getLogger("some.library").info("from the standard library")
    logger.info("after the request")
    lines = json_lines(stream)
    assert request_id == "req-42", "request_context yields the id it binds"
    assert [line["request_id"] for line in lines] == ["req-42", "req-42", None], (
        "both lines inside the block carry the id, the line after it does not"
    )


@exercise("02.4")
def test_a_request_id_is_made_when_none_is_given(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")
    with request_context() as request_id:
        logger.info("hello")
    assert isinstance(request_id, str) and len(request_id) >= 16, f"a fresh, unguessable id is made; got {request_id!r}"
    assert json_lines(stream)[0]["request_id"] == request_id


@exercise("02.4")
def test_concurrent_requests_keep_their_own_ids(capture: Capture) -> None:
    stream = capture(level="INFO", format="json-compact")

    async def handle(request_id: str) -> None:
        with request_context(request_id):
            for step in range(3):
                logger.info("step {}", step)
                await asyncio.sleep(0)  # let the other request run in between

    async def main() -> None:
        await asyncio.gather(handle("first"), handle("second"))

    asyncio.run(main())
    lines = json_lines(stream)
    assert len(lines) == 6
    ids = [line["request_id"] for line in lines]
    assert ids.count("first") == 3 and ids.count("second") == 3, f"each task keeps its own id; got {ids}"
    assert ids != ["first"] * 3 + ["second"] * 3, "the two requests ran interleaved, so their lines interleave"

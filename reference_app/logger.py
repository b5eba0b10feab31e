"""One logger for every service, shaped by the environment.

- ``local``: coloured text for a person at a terminal, from DEBUG up;
- ``dev``: one JSON object per line with every detail (source line, process), from DEBUG up;
- ``prod``: one compact JSON object per line, from INFO up.

The YAML file of each environment chooses the shape (see ``config/*.yaml``); this module only obeys
``LogSettings``. Records from the standard ``logging`` module (libraries, uvicorn) are routed here too,
so a service writes one stream in one shape.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from .config.settings import LogSettings

if TYPE_CHECKING:
    from loguru import Message, Record

# Keys of a record's "extra" that are not copied into the JSON "extra" field: the first two have fields of
# their own, the last only decorates the text format.
NOT_EXTRA = ("logger", "request_id", "request_tag")

# Libraries that attach handlers of their own; their records must reach ours instead.
ROUTED_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
    "<cyan>{extra[logger]}</cyan>{extra[request_tag]} <level>{message}</level>"
)


def json_record(record: Record, *, compact: bool) -> dict[str, Any]:
    """The JSON object written for one record."""
    # exercise 02.1: shape one record as a JSON-ready dict
    # hint: The keys, in this order: time (ISO 8601), level (its name), message, logger, request_id, extra.
    # hint: "logger" and "request_id" are in record["extra"] (see _fill_defaults); "extra" holds its other keys, less NOT_EXTRA.
    # hint: Only when compact is False, add "source" as "path:line" and "process" (the process id). An exception adds "exception" in both.
    document: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["extra"]["logger"],
        "request_id": record["extra"]["request_id"],
        "extra": {key: value for key, value in record["extra"].items() if key not in NOT_EXTRA},
    }
    if not compact:
        document["source"] = f"{record['file'].path}:{record['line']}"
        document["process"] = record["process"].id
    if record["exception"] is not None and record["exception"].value is not None:
        document["exception"] = "".join(traceback.format_exception(record["exception"].value)).strip()
    return document
    # end exercise


def _json_sink(stream: TextIO, *, compact: bool) -> Callable[[Message], None]:
    separators = (",", ":") if compact else (", ", ": ")

    def write(message: Message) -> None:
        document = json_record(message.record, compact=compact)
        stream.write(json.dumps(document, default=str, ensure_ascii=False, separators=separators) + "\n")
        stream.flush()

    return write


def _fill_defaults(record: Record) -> None:
    """Give every record the fields the sinks rely on, whoever logged it."""
    extra = record["extra"]
    extra.setdefault("logger", record["name"])
    extra.setdefault("request_id", None)
    extra["request_tag"] = f" [{extra['request_id']}]" if extra["request_id"] else ""


def configure_logging(settings: LogSettings, *, service: str, stream: TextIO | None = None) -> None:
    """Replace every sink with the one the settings ask for, and route the standard library here."""
    stream = stream or sys.stderr
    # exercise 02.2: add the one sink that LogSettings asks for
    # hint: logger.remove() first: loguru starts with a DEBUG sink on stderr, and a second call must not add a second sink.
    # hint: logger.configure(extra={"service": service}, patcher=...) binds the service name and runs the patcher on every record.
    # hint: "text" → logger.add(stream, format=TEXT_FORMAT, colorize=settings.colour); "json"/"json-compact" → logger.add(_json_sink(...)). Both at settings.level.
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_fill_defaults)
    if settings.format == "text":
        logger.add(stream, level=settings.level, format=TEXT_FORMAT, colorize=settings.colour)
    else:
        logger.add(_json_sink(stream, compact=settings.format == "json-compact"), level=settings.level)
    # end exercise
    route_standard_logging(settings.level)


class InterceptHandler(logging.Handler):
    """A ``logging`` handler that hands every record to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        # exercise 02.3: hand a standard-library record to loguru
        # hint: Keep the level's name when loguru knows it (logger.level(name) raises ValueError otherwise), else pass record.levelno.
        # hint: logger.bind(logger=record.name) keeps the library's logger name; .opt(exception=record.exc_info) keeps its traceback.
        # hint: .opt(depth=N) makes loguru report the caller's line: count the frames from here up to the first one outside `logging`.
        level: str | int
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame, depth = frame.f_back, depth + 1
        logger.bind(logger=record.name).opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())
        # end exercise


def route_standard_logging(level: str) -> None:
    """Send the root logger, and the libraries that have handlers of their own, through loguru."""
    logging.basicConfig(handlers=[InterceptHandler()], level=logger.level(level).no, force=True)
    for name in ROUTED_STDLIB_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.propagate = True
    # pika logs every timer it sets at DEBUG: several lines per poll, megabytes an hour. Its INFO lines (connected,
    # closed, blocked) are the ones a person needs; our own DEBUG lines are kept.
    logging.getLogger("pika").setLevel(max(logging.INFO, logger.level(level).no))


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """Tag every line logged inside the block, in this task and the tasks it starts, with a request id."""
    # exercise 02.4: bind a request id for the duration of a block
    # hint: Make an id when none is given: uuid.uuid4().hex.
    # hint: logger.contextualize(request_id=...) is a context manager built on contextvars: concurrent asyncio tasks keep their own id.
    request_id = request_id or uuid.uuid4().hex
    with logger.contextualize(request_id=request_id):
        yield request_id
    # end exercise

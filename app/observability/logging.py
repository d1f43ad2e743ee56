"""JSON log lines for the gateway and for gunicorn's own loggers.

Every record becomes one JSON object: time, level, logger, pid, message, plus
the ``fields`` dict a caller passes in ``extra``. Secrets never reach a log
line because nothing logs headers or bodies; ``redact`` is the last guard for
messages that might quote a key (e.g. an exception text).

With ``LOG_FILE`` every logger writes through one shared ``FileHandler``;
gunicorn's SIGUSR1 handling reopens the file handlers of its own loggers in
the master and every worker, and because the handler is the same object for
the app's loggers too, one signal reopens the file for all of them (logrotate).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from app.observability.log_handlers import LineWriting
from app.process_id import current_pid

# Provider-style keys (sk-..., sk-ant-...) and anything after "Bearer ".
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+|x-api-key:\s*\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    _cached: tuple[int, str] = (-1, "")  # (second, its text), swapped as one tuple: safe across threads

    def timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second, not per line."""
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._cached = cached
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def line(self, created: float, level: str, logger: str, pid: int | None, msg: str,
             fields: dict[str, Any] | None, exc: str | None = None) -> str:
        """One JSON line; what ``format`` makes of a record, and ``log_fields`` of its arguments."""
        entry: dict[str, Any] = {"ts": self.timestamp(created), "level": level, "logger": logger, "pid": pid,
                                 "msg": redact(msg)}
        if fields:
            entry.update(fields)
        if exc is not None:
            entry["exc"] = redact(exc)
        return orjson.dumps(entry, default=str).decode()

    def encoded_line(self, created: float, level: str, logger: str, pid: int, msg: str,
                     fields: dict[str, Any]) -> bytes:
        """The same line as ``line`` (no exception), UTF-8 encoded and ending in a newline: one orjson call.

        ``msg`` is a constant of the caller's (``log_fields``), redacted once and remembered.
        """
        shown = _REDACTED.get(msg)
        if shown is None:
            shown = redact(msg)
            if len(_REDACTED) < _REDACTED_LIMIT:
                _REDACTED[msg] = shown
        return orjson.dumps({"ts": self.timestamp(created), "level": level, "logger": logger, "pid": pid,
                             "msg": shown, **fields}, default=str, option=orjson.OPT_APPEND_NEWLINE)

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname.lower(), record.name, record.process,
                         record.getMessage(), getattr(record, "fields", None), exc)


_REDACTED: dict[str, str] = {}  # log_fields' messages (a few constants), redacted
_REDACTED_LIMIT = 64
_LEVEL_NAMES: dict[int, str] = {}  # level -> its name in a line, as logging names it


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, extra={"fields": fields})``, without a ``LogRecord`` when it can.

    The access line is logged for every request, and most of its cost was the
    logging machinery around it (record, handler chain, formatter). When every
    handler the line would reach is one of our line handlers with a
    ``JsonFormatter`` and no filters (what ``logconfig_dict`` configures), the
    line is formatted once and handed to them directly: the same bytes. Any
    other setup (a test's capture handler, a filter, another formatter) takes
    the ordinary path.
    """
    if not logger.isEnabledFor(level):
        return
    handlers = direct_handlers(logger, level)
    if handlers is None:
        logger.log(level, msg, extra={"fields": fields})
        return
    if not handlers:
        return
    created = time.time()
    level_name = _LEVEL_NAMES.get(level)
    if level_name is None:
        level_name = _LEVEL_NAMES[level] = logging.getLevelName(level).lower()
    if len(handlers) == 1 and handlers[0].terminator == "\n":  # the shipped setup: one handler
        handler = handlers[0]
        handler.add_encoded(handler.formatter.encoded_line(created, level_name, logger.name, current_pid(), msg,
                                                           fields))
        return
    lines: dict[int, str] = {}
    for handler in handlers:
        formatter = handler.formatter
        text = lines.get(id(formatter))
        if text is None:
            text = lines[id(formatter)] = formatter.line(  # type: ignore[union-attr]
                created, level_name, logger.name, current_pid(), msg, fields)
        handler.add_line(text + handler.terminator)


def direct_handlers(logger: logging.Logger, level: int) -> list[Any] | None:
    """The handlers a record of ``level`` would reach, if all can take a line directly; else ``None``."""
    found: list[Any] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if level < handler.level:
                continue
            if not isinstance(handler, LineWriting) or handler.filters or type(handler.formatter) is not JsonFormatter:
                return None
            found.append(handler)
        current = current.parent if current.propagate else None  # type: ignore[assignment]
    return found


def logconfig_dict(level: str, log_file: str | None = None) -> dict[str, Any]:
    """dictConfig for the app and gunicorn (error and access logs) alike: stderr, or ``log_file``."""
    if log_file:
        handler: dict[str, Any] = {"class": "app.observability.log_handlers.LineFileHandler", "formatter": "json",
                                   "filename": log_file, "encoding": "utf-8"}
    else:
        handler = {"class": "app.observability.log_handlers.LineStreamHandler", "formatter": "json",
                   "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.observability.logging.JsonFormatter"}},
        "handlers": {"main": handler},
        "root": {"level": level, "handlers": ["main"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["main"], "propagate": False},
            # Our own access line (llm_edge.access) has more detail than gunicorn's.
            "gunicorn.access": {"level": "WARNING", "handlers": ["main"], "propagate": False},
        },
    }


def configure(level: str, log_file: str | None = None) -> None:
    """For processes not started by gunicorn (tests, scripts)."""
    import logging.config

    logging.config.dictConfig(logconfig_dict(level, log_file))

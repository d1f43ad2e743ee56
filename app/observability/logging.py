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

# Provider-style keys (sk-..., sk-ant-...) and anything after "Bearer ".
_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+|x-api-key:\s*\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    _cached: tuple[int, str] = (-1, "")  # (second, its text), swapped as one tuple: safe across threads

    def _timestamp(self, record: logging.LogRecord) -> str:
        """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second, not per line."""
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._cached = cached
        return f"{cached[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def logconfig_dict(level: str, log_file: str | None = None, flush_ms: int = 0) -> dict[str, Any]:
    """dictConfig for the app and gunicorn (error and access logs) alike: stderr, or ``log_file``.

    ``flush_ms`` > 0 batches lines (``log_handlers.py``); 0 writes each line at once.
    """
    batching = {"flush_interval": flush_ms / 1000}
    if log_file:
        handler: dict[str, Any] = {"class": "app.observability.log_handlers.BatchedFileHandler", "formatter": "json",
                                   "filename": log_file, "encoding": "utf-8", **batching}
    else:
        handler = {"class": "app.observability.log_handlers.BatchedStreamHandler", "formatter": "json",
                   "stream": "ext://sys.stderr", **batching}
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


def configure(level: str, log_file: str | None = None, flush_ms: int = 0) -> None:
    """For processes not started by gunicorn (tests, scripts)."""
    import logging.config

    logging.config.dictConfig(logconfig_dict(level, log_file, flush_ms))

"""Log handlers that can write lines in batches instead of one system call per line.

Every request logs one access line, and a ``write`` per line is a system call
that releases the GIL. With ``LOG_FLUSH_MS`` > 0 lines collect in memory and go
out together, at most ``LOG_FLUSH_MS`` after the first of them, as soon as a
WARNING or worse arrives, before a fork, and at exit (as Envoy does with its
access log, ``--file-flush-interval-msec``). With 0, the default, every line is
written at once: on the benchmark batching made the gateway no faster (README,
"Logs"); it is there for deployments where a write is slow (a busy pipe, a
network filesystem).

Each write holds whole lines and at most ``PIPE_BUF`` (4096) bytes, so lines
from several workers sharing one pipe (stderr under Docker or Kubernetes) or
one ``O_APPEND`` file never interleave mid-line; a longer line goes alone.

The price of batching: if a worker is killed outright (SIGKILL, OOM) the lines
of its last ``LOG_FLUSH_MS`` are lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TextIO

PIPE_BUF = 4096

_live: weakref.WeakSet[Batching] = weakref.WeakSet()


def _bytes(line: str) -> int:
    """A line's size once encoded (UTF-8), without encoding the usual all-ASCII line."""
    return len(line) if line.isascii() else len(line.encode())


class Batching:
    """The batching part, shared by the stream and the file handler (both ``StreamHandler``s)."""

    stream: TextIO | None
    terminator: str

    def _init_batching(self, interval: float) -> None:
        self.interval = interval
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._due = 0.0
        self._timer: threading.Thread | None = None
        _live.add(self)

    def emit(self, record: logging.LogRecord) -> None:  # called by Handler.handle() under the handler's lock
        try:
            self._add(self.format(record) + self.terminator, record.levelno)  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)  # type: ignore[attr-defined]

    def add_line(self, line: str, levelno: int) -> None:
        """A line formatted elsewhere (``logging.log_fields``), taken like an emitted record's."""
        self.acquire()  # type: ignore[attr-defined]
        try:
            self._add(line, levelno)
        finally:
            self.release()  # type: ignore[attr-defined]

    def _add(self, line: str, levelno: int) -> None:
        if self.interval <= 0:  # no batching (the default): the line goes out now, alone
            stream = self._target()
            if stream is not None:
                stream.write(line)
                stream.flush()
            return
        self._pending.append(line)
        self._pending_bytes += _bytes(line)
        if len(self._pending) == 1:
            self._due = time.monotonic() + self.interval
            if self._timer is None:
                self._start_timer()
        if levelno >= logging.WARNING or self._pending_bytes >= PIPE_BUF or time.monotonic() >= self._due:
            self._write_pending()

    def _write_pending(self) -> None:
        """Whole lines, up to PIPE_BUF bytes per write (caller holds the lock)."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        stream = self._target()
        if stream is None or not pending:
            return
        chunk: list[str] = []
        size = 0
        for line in pending:
            n = _bytes(line)
            if chunk and size + n > PIPE_BUF:
                stream.write("".join(chunk))
                stream.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += n
        stream.write("".join(chunk))
        stream.flush()

    def _target(self) -> TextIO | None:
        return self.stream

    def flush(self) -> None:
        self.acquire()  # type: ignore[attr-defined]
        try:
            self._write_pending()
            if self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()
        finally:
            self.release()  # type: ignore[attr-defined]

    def _start_timer(self) -> None:
        """Writes lines that would otherwise wait for the next one (an idle server); one thread per process."""
        ref = weakref.ref(self)

        def run() -> None:
            while True:
                handler = ref()
                if handler is None:
                    return
                interval = handler.interval
                del handler
                time.sleep(interval)
                handler = ref()
                if handler is None:
                    return
                if handler._pending:
                    handler.flush()
                del handler

        self._timer = threading.Thread(target=run, name="log-flush", daemon=True)
        self._timer.start()

    def _after_fork(self) -> None:
        self._timer = None  # threads do not survive a fork; the child starts its own on its first line


class BatchedStreamHandler(Batching, logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO | None = None, flush_interval: float = 0.2) -> None:
        logging.StreamHandler.__init__(self, stream)
        self._init_batching(flush_interval)


class BatchedFileHandler(Batching, logging.FileHandler):
    """A ``FileHandler`` still, so gunicorn's SIGUSR1 reopens it (``close`` writes what is pending first)."""

    def __init__(self, filename: str, encoding: str | None = None, flush_interval: float = 0.2) -> None:
        logging.FileHandler.__init__(self, filename, encoding=encoding)
        self._init_batching(flush_interval)

    def _target(self) -> TextIO | None:
        if self.stream is None and not self._closed:  # type: ignore[attr-defined]
            self.stream = self._open()
        return self.stream


def _flush_all() -> None:
    for handler in list(_live):
        handler.flush()


def _reset_after_fork() -> None:
    for handler in list(_live):
        handler._after_fork()


# Pending lines are written before a fork, so a forked worker never inherits (and repeats) them.
os.register_at_fork(before=_flush_all, after_in_child=_reset_after_fork)

"""Log handlers that write each line in one write, at once, and take pre-formatted lines.

Each line goes out alone, whole, in one ``write`` followed by a flush, so lines
from several workers sharing one pipe (stderr under Docker or Kubernetes) or
one ``O_APPEND`` file never interleave mid-line: a write of at most
``PIPE_BUF`` (4096) bytes reaches a pipe whole, and nothing is left in a buffer
for a forked child to repeat or for a killed worker to lose.

``add_line`` takes a line already formatted (``logging.log_fields``, the access
line's fast path) under the same lock as an emitted record.

(Writing lines in batches was measured no faster and removed:
docs/performance.md, "What we tried".)
"""

from __future__ import annotations

import logging
from typing import TextIO


class LineWriting:
    """One line, one write: shared by the stream and the file handler (both ``StreamHandler``s)."""

    stream: TextIO | None
    terminator: str

    def emit(self, record: logging.LogRecord) -> None:  # called by Handler.handle() under the handler's lock
        try:
            self._write(self.format(record) + self.terminator)  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)  # type: ignore[attr-defined]

    def add_line(self, line: str) -> None:
        """A line formatted elsewhere (ending in ``terminator``), written like an emitted record's."""
        self.acquire()  # type: ignore[attr-defined]
        try:
            self._write(line)
        finally:
            self.release()  # type: ignore[attr-defined]

    def _write(self, line: str) -> None:
        stream = self._target()
        if stream is not None:
            stream.write(line)
            stream.flush()

    def _target(self) -> TextIO | None:
        return self.stream


class LineStreamHandler(LineWriting, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class LineFileHandler(LineWriting, logging.FileHandler):
    """A ``FileHandler`` still, so gunicorn's SIGUSR1 reopens it (close, then ``_open``)."""

    def _target(self) -> TextIO | None:
        if self.stream is None and not self._closed:  # type: ignore[attr-defined]
            self.stream = self._open()
        return self.stream

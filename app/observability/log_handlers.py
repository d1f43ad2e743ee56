"""Log handlers that write each line in one write, at once, and take pre-formatted lines.

Each line goes out alone, whole, in one ``write`` followed by a flush, so lines
from several workers sharing one pipe (stderr under Docker or Kubernetes) or
one ``O_APPEND`` file never interleave mid-line: a write of at most
``PIPE_BUF`` (4096) bytes reaches a pipe whole, and nothing is left in a buffer
for a forked child to repeat or for a killed worker to lose.

``add_line`` takes a line already formatted (``logging.log_fields``, the access
line's fast path) under the same lock as an emitted record.

(Writing lines in batches was measured no faster and removed:
docs/performance.md, "Measured and not adopted".)
"""

from __future__ import annotations

import codecs
import logging
import os
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

    def add_encoded(self, line: bytes) -> None:
        """A line formatted elsewhere, UTF-8 encoded and ending in a newline (``logging.log_fields``).

        When the stream is a UTF-8 text file over a descriptor (stderr, a log file), the bytes go to the
        descriptor in one ``os.write``: what the text stream's write and flush would send, without
        decoding and re-encoding the line. (Every line of these handlers leaves the stream's buffer
        empty, so nothing written before is overtaken.) Any other stream takes the text.
        """
        with self.lock:  # type: ignore[attr-defined]
            stream = self._target()
            if stream is None:
                return
            known = self._descriptor
            if known is None or known[0] is not stream:
                known = self._descriptor = (stream, _utf8_descriptor(stream))
            fd = known[1]
            if fd is None:
                stream.write(line.decode())
                stream.flush()
                return
            written = os.write(fd, line)
            while written < len(line):  # a short write (a signal, a full disk): the rest, in order
                line = line[written:]
                written = os.write(fd, line)

    _descriptor: tuple[TextIO, int | None] | None = None  # (stream, its descriptor if bytes may go there)

    def _write(self, line: str) -> None:
        stream = self._target()
        if stream is not None:
            stream.write(line)
            stream.flush()

    def _target(self) -> TextIO | None:
        return self.stream


def _utf8_descriptor(stream: TextIO) -> int | None:
    """The descriptor under a UTF-8 text stream, its buffer flushed; ``None`` for any other stream."""
    try:
        if codecs.lookup(stream.encoding).name != "utf-8":
            return None
        fd = stream.fileno()
        stream.flush()
    except (AttributeError, LookupError, OSError, TypeError, ValueError):  # no encoding, no descriptor, closed
        return None
    return fd


class LineStreamHandler(LineWriting, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class LineFileHandler(LineWriting, logging.FileHandler):
    """A ``FileHandler`` still, so gunicorn's SIGUSR1 reopens it (close, then ``_open``)."""

    def _target(self) -> TextIO | None:
        if self.stream is None and not self._closed:  # type: ignore[attr-defined]
            self.stream = self._open()
        return self.stream

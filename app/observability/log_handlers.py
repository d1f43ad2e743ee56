"""Log handlers that write each line in one write, at once, and take pre-formatted lines.

Each line goes out alone, whole, in one ``write`` followed by a flush, so lines
from several workers sharing one pipe (stderr under Docker or Kubernetes) or
one ``O_APPEND`` file never interleave mid-line: a write of at most
``PIPE_BUF`` (4096) bytes reaches a pipe whole, and nothing is left in a buffer
for a forked child to repeat or for a killed worker to lose.

``add_line`` takes a line already formatted under the same lock as an emitted
record; ``add_encoded`` (``logging.log_fields``, the access line's fast path)
writes its bytes without the lock (its docstring says why that is safe).

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

        When the stream is a UTF-8 text file over a descriptor (stderr, a log file), the bytes go to a
        descriptor in one ``os.write``, without the handler's lock: ``os.write`` lets go of the GIL, and a
        thread waiting for the GIL to come back while holding the lock made every other request's access
        line wait behind it (at 1,000 open streams the wait reached p90 ~400 ms). One write of a whole
        line needs no lock to stay whole: a pipe takes up to ``PIPE_BUF`` bytes at once and an
        ``O_APPEND`` file appends each write whole. Any other stream takes the text, under the lock.
        """
        stream, fd = self._lines
        if stream is not self.stream:  # the first line, or the handler reopened its file
            fd = self._line_descriptor()
        if fd is None:
            with self.lock:  # type: ignore[attr-defined]
                target = self._target()
                if target is not None:
                    target.write(line.decode())
                    target.flush()
            return
        written = os.write(fd, line)
        while written < len(line):  # a short write (a signal, a full disk): the rest, in order
            line = line[written:]
            written = os.write(fd, line)

    # (the stream lines were last written for, the descriptor they go to; None: text only)
    _lines: tuple[TextIO | None, int | None] = (None, None)

    def _line_descriptor(self) -> int | None:
        """The descriptor for encoded lines, found (under the lock) for the stream the handler now has."""
        with self.lock:  # type: ignore[attr-defined]
            stream = self._target()
            fd = None if stream is None else self._descriptor_for(stream)
            self._lines = (stream, fd)
            return fd

    def _descriptor_for(self, stream: TextIO) -> int | None:
        """The stream's own descriptor: a stream handler's (stderr) is never closed under it."""
        return _utf8_descriptor(stream)

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

    _own_fd: int | None = None

    def _target(self) -> TextIO | None:
        if self.stream is None and not self._closed:  # type: ignore[attr-defined]
            self.stream = self._open()
        return self.stream

    def _descriptor_for(self, stream: TextIO) -> int | None:
        """A descriptor of the handler's own, pointed at each file it opens (``dup2``): a reopen closes the
        old file's descriptor, and a line written without the lock meanwhile must reach the old file or
        the new one, never whatever the system hands that number to next."""
        fd = _utf8_descriptor(stream)
        if fd is None:
            return None
        if self._own_fd is None:
            self._own_fd = os.dup(fd)
        else:
            os.dup2(fd, self._own_fd)
        return self._own_fd

"""Server-Sent Events: an incremental parser for upstream bytes and an encoder for ours.

Upstream bodies arrive in arbitrary chunks (a chunk may end inside a UTF-8
character or between the ``\\r`` and ``\\n`` of one line ending), so the
parser keeps the unfinished line as bytes and only decodes whole lines. It
follows the WHATWG event-stream rules: ``\\r\\n``, ``\\n`` and ``\\r`` all end a
line, ``:`` starts a comment, several ``data:`` lines join with ``\\n``, a
blank line dispatches the event. ``id`` and ``retry`` are read and ignored:
the gateway never reconnects to a provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import UpstreamError

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
# One line longer than this is not an SSE stream we want to hold in memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Turns a byte stream into ``SSEEvent``s; feed it chunks, then ``flush()`` at EOF."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._skip_lf = False  # the last chunk ended with \r: a leading \n is the same line end
        self._bom_checked = False
        self._event: str | None = None
        self._data: list[str] = []
        self._max_line = max_line_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf
        scan_from = len(buf)  # the kept tail holds no line end: only scan the new bytes
        buf += chunk
        if not self._bom_checked:
            if len(buf) < len(_BOM) and _BOM.startswith(bytes(buf)):
                return []  # could still be a BOM split across chunks
            self._bom_checked = True
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
                scan_from = 0
        events: list[SSEEvent] = []
        pos = 0
        for match in _LINE_END.finditer(buf, scan_from):
            self._line(bytes(buf[pos : match.start()]), events)
            pos = match.end()
        # A \r as the very last byte may be the first half of a \r\n split across chunks.
        self._skip_lf = pos == len(buf) and pos > 0 and buf[pos - 1] == 0x0D
        del buf[:pos]
        if len(buf) > self._max_line:
            raise UpstreamError(f"Provider sent an SSE line longer than {self._max_line} bytes")
        return events

    def flush(self) -> list[SSEEvent]:
        """At EOF: the last line even without its line end, then the pending event.

        The spec drops an event whose blank line never came; we deliver it,
        because servers often close right after their last ``data:`` line.
        A payload cut mid-way still fails JSON parsing in the decoder, and a
        missing terminal marker is caught there, so this never hides a cut.
        """
        events: list[SSEEvent] = []
        if self._buf:
            tail = bytes(self._buf)
            self._buf.clear()
            if not self._bom_checked and _BOM.startswith(tail):
                tail = b""
            if tail:
                self._line(tail, events)
        self._bom_checked = True
        self._skip_lf = False
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                events.append(SSEEvent(self._event or None, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event: an optional ``event:`` line, one ``data:`` line per line of data."""
    out = bytearray()
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("an SSE event name cannot contain a line break")
        out += b"event: " + event.encode() + b"\n"
    for line in _LINE_END.split(data):
        out += b"data: " + line + b"\n"
    out += b"\n"
    return bytes(out)

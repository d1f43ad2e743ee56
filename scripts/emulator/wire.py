"""What goes on the wire, for both APIs: JSON, SSE framing, ids, stream pieces, the API error."""

from __future__ import annotations

import re
import uuid
from typing import Any

try:  # orjson is faster; the stdlib fallback keeps the emulator usable anywhere.
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a runtime dependency of the project
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    loads = json.loads


class ApiError(Exception):
    """A provider error: rendered in OpenAI or Anthropic shape by the API that was called."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        etype: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.etype = etype
        self.param = param
        self.code = code


DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Request too large",
    429: "Rate limit reached, please try again later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "The server is overloaded, please try again later",
    504: "Gateway timeout",
    529: "Overloaded",
}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def data_event(obj: Any) -> bytes:
    """An unnamed SSE event (OpenAI's)."""
    return b"data: " + dumps(obj) + b"\n\n"


def named_event(event: str, data: dict[str, Any]) -> bytes:
    """A named SSE event (Anthropic's)."""
    return b"event: " + event.encode() + b"\n" + data_event(data)


def bearer(headers: dict[str, str]) -> str | None:
    """The key of an ``Authorization: Bearer`` header, if any."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


_PIECE_RE = re.compile(r"\s*\S+")


def word_pieces(text: str) -> list[str]:
    """Word-sized stream deltas whose concatenation is exactly ``text``."""
    pieces = _PIECE_RE.findall(text)
    tail = text[sum(map(len, pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces.append(tail)
    return pieces


def fragments(text: str, parts: int = 4) -> list[str]:
    """Split text (tool arguments, a dripped body) into several pieces, like real streams do."""
    if len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]

"""Injected misbehaviour: the :class:`Fault` record, the book of queued and default faults, fault replies."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

from .wire import DEFAULT_MESSAGES, dumps

GARBAGE_KINDS = ("text", "json", "html")


@dataclass
class Fault:
    """One injected misbehaviour; fields combine (e.g. ``delay`` then ``status``).

    status       answer with this HTTP status and an error body in the provider's shape
    retry_after  ``retry-after`` header value in seconds (sent with any response of this fault)
    message      error message for ``status`` / ``error_after`` (default: a realistic one)
    body         raw body for ``status`` instead of the provider error (str, bytes or JSON-able)
    headers      extra response headers
    garbage      200 with a bad body: ``True``/``"text"`` non-JSON with the expected content type,
                 ``"json"`` valid JSON of the wrong shape, ``"html"`` a text/html proxy page
    delay        seconds to wait before the response headers (slow answer / slow first byte)
    drip         seconds between SSE events (between body pieces for JSON answers)
    cut_after    streams: close abruptly after this many SSE events, without the terminal event;
                 JSON: close after this many body bytes (Content-Length announces the full body)
    error_after  streams only: after this many events send an error event in the stream's format, then end
    hang         read the request, then never answer until the emulator stops or the client goes away
    usage        a normal answer whose usage reports these fields too (merged, objects key by key): e.g.
                 Anthropic's ``cache_read_input_tokens``, ``cache_creation``, ``server_tool_use``, or OpenAI's
                 ``prompt_tokens_details``; in streams on every event that carries usage
    script       200 with this body sent verbatim, unvalidated (str or bytes): a JSON answer, or for
                 ``stream: true`` requests an SSE body, sent event by event as split at its blank lines
                 (``drip``, ``cut_after`` apply); replays a provider's exact bytes
    """

    status: int | None = None
    retry_after: float | str | None = None
    message: str | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    garbage: bool | str = False
    delay: float = 0.0
    drip: float = 0.0
    cut_after: int | None = None
    error_after: int | None = None
    hang: bool = False
    usage: dict[str, Any] | None = None
    script: str | bytes | None = None

    def __post_init__(self) -> None:
        if self.garbage is True:
            self.garbage = "text"
        if self.garbage and self.garbage not in GARBAGE_KINDS:
            raise ValueError(f"Fault.garbage must be one of {GARBAGE_KINDS} or a bool, got {self.garbage!r}")
        if self.status is not None and not 100 <= int(self.status) <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status!r}")
        for name in ("delay", "drip"):
            if getattr(self, name) < 0:
                raise ValueError(f"Fault.{name} must be >= 0")
        for name in ("cut_after", "error_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Fault.{name} must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from the control API's JSON; unknown keys are an error so typos do not pass silently."""
        if not isinstance(data, dict):
            raise ValueError(f"a fault must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults, for readable listings."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value if not isinstance(value, bytes) else value.decode("utf-8", "replace")
        return out


def as_fault(value: Fault | dict[str, Any]) -> Fault:
    """Accept a Fault, a dict, or a Fault from another import of this package (tests may load it twice)."""
    if isinstance(value, Fault):
        return value
    if type(value).__name__ == "Fault" and hasattr(value, "__dataclass_fields__"):
        return Fault(**{f.name: getattr(value, f.name) for f in fields(Fault)})
    return Fault.from_dict(value)


class FaultBook:
    """Queued faults (each used once, FIFO, optionally only under a path prefix) and default faults.

    Not locked: the emulator calls it under its own lock.
    """

    def __init__(self) -> None:
        self.queue: deque[tuple[str | None, Fault]] = deque()
        self.defaults: dict[str | None, Fault] = {}

    def push(self, faults: list[Fault], path: str | None) -> None:
        self.queue.extend((path, f) for f in faults)

    def set_default(self, fault: Fault | None, path: str | None) -> None:
        if fault is None:
            self.defaults.pop(path, None)
        else:
            self.defaults[path] = fault

    def clear(self) -> None:
        self.queue.clear()
        self.defaults.clear()

    def state(self) -> dict[str, Any]:
        return {
            "queued": [{"path": p, "fault": f.to_dict()} for p, f in self.queue],
            "defaults": [{"path": p, "fault": f.to_dict()} for p, f in self.defaults.items()],
        }

    def pick(self, path: str) -> Fault | None:
        """The first queued fault for ``path`` (taken off the queue), else the longest-prefix default."""
        for k, (prefix, queued) in enumerate(self.queue):
            if prefix is None or path.startswith(prefix):
                del self.queue[k]
                return queued
        fault, best = None, -1
        for prefix, default in self.defaults.items():
            size = 0 if prefix is None else len(prefix)
            if (prefix is None or path.startswith(prefix)) and size > best:
                best, fault = size, default
        return fault


# ------------------------------------------------------------------------------------- fault replies


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top, nested objects merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def with_usage(reply: Any, usage: dict[str, Any]) -> Any:
    """An answer (a JSON body, or a list of SSE event bytes) whose usage reports ``usage`` too."""
    if isinstance(reply, dict):
        return merged(reply, {"usage": usage}) if isinstance(reply.get("usage"), dict) else reply
    out = []
    for event in reply:
        head, sep, data = event.partition(b"data: ")
        try:
            payload = json.loads(data)
        except ValueError:
            out.append(event)
            continue
        if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
            payload["usage"] = merged(payload["usage"], usage)
        elif isinstance(payload, dict) and isinstance((payload.get("message") or {}).get("usage"), dict):
            payload["message"]["usage"] = merged(payload["message"]["usage"], usage)
        else:
            out.append(event)
            continue
        out.append(head + sep + dumps(payload) + b"\n\n")
    return out


def reply_headers(fault: Fault) -> list[tuple[str, str]]:
    """``retry-after`` and the fault's own headers, sent with whatever the fault answers."""
    extra: list[tuple[str, str]] = []
    if fault.retry_after is not None:
        value = fault.retry_after
        whole = isinstance(value, float) and value.is_integer()
        extra.append(("retry-after", str(int(value)) if whole else str(value)))
    return extra + list((fault.headers or {}).items())


def status_payload(fault: Fault, api: ModuleType) -> bytes:
    """The body of a ``status`` fault: the raw ``body`` given, else an error in the API's shape."""
    status = int(fault.status or 500)
    body = fault.body
    if body is not None:
        return body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else dumps(body)
    return dumps(api.error_body(status, fault.message or DEFAULT_MESSAGES.get(status, f"Error {status}")))


HTML_PAGE = b"<html><head><title>502</title></head><body>upstream proxy error</body></html>"


def garbage_data(kind: str, stream: bool) -> bytes:
    """What a ``garbage`` fault sends instead of JSON: wrong-shape JSON or text that is not JSON."""
    if kind == "json":
        if stream:
            return b'{"unexpected": "shape", "n": 1}'
        return b'{"id": "garbage", "object": "unexpected", "data": [1, 2, 3]}'
    return b"this is not json {"


def script_events(script: str | bytes) -> list[bytes]:
    """A scripted SSE body as its events, each with its blank line, byte for byte (nothing re-encoded)."""
    data = script.encode() if isinstance(script, str) else script
    events: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\n\n", start)
        if end < 0:
            break
        events.append(data[start:end + 2])
        start = end + 2
    if start < len(data):
        events.append(data[start:])
    return events

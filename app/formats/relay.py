"""Same dialect on both sides: the caller's JSON goes upstream as it came, the answer comes back as it came.

When the caller's API and the target's wire format are the same (an OpenAI
caller and an OpenAI-format provider, an Anthropic caller and an
Anthropic-format provider) nothing is translated:

* **request**: the caller's body, with only ``model`` rewritten where an alias
  maps it and, for OpenAI streams, ``stream_options.include_usage: true`` so
  tokens are counted. When neither changes anything the caller's bytes go
  upstream untouched (``upstream_body``);
* **answer**: the provider's JSON bytes, and each SSE event's bytes as they
  arrive (``RelayedEvent``), while the codec's own reader observes them
  (usage, stop reason, text, errors) for accounting, tracing and the cache;
* **OpenAI streams** whose caller did not ask for usage lose exactly what the
  gateway added: the usage-only chunk and the ``"usage":null`` of the other
  chunks (``strip_added_usage``), so the caller sees what the provider would
  have sent it.

Validation (``check_body``) is what the gateway itself needs (a JSON object, a
model name, a messages array, a boolean ``stream``, the integer and number
bounds the codecs check on the fields they know), never the content's shape:
unknown fields, block types and event types pass both ways, and the rest is
the provider's to refuse (its 4xx comes back in the caller's shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from app.errors import InvalidRequest, UpstreamError
from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.formats.canonical import ChatRequest, StreamEvent
from app.formats.common import (
    INT32_MAX,
    as_int,
    as_list,
    as_model,
    opt_bool,
    opt_int,
    opt_number,
    opt_obj,
    required,
)
from app.formats.sse import SSEParser

CODECS = {"openai": openai_codec, "anthropic": anthropic_codec}


# Translations remembered per body (one per target of another dialect: a primary and its fallbacks).
_MAX_TRANSLATIONS = 4


class CallerBody:
    """A caller's body as it came, for the targets that speak its dialect.

    ``request`` is what the pipeline reads before it knows whether a target translates:
    model, delivery, output allowance, sampling (``summary``), or the whole parse when one was
    made. The canonical request (``canonical()``) is parsed only when a translated target
    needs it; a relay never does. When the body holds something the canonical model cannot
    (a document block, a server tool, ``n: 2``...) a relay still carries it, and a translated
    target gets the caller's codec's 400 (the ``untranslatable`` rule).
    """

    __slots__ = ("_parsed", "_translations", "body", "dialect", "raw", "request")

    def __init__(self, dialect: str, body: dict[str, Any], raw: bytes, parsed: ChatRequest | None = None) -> None:
        self.dialect = dialect
        self.body = body
        self.raw = raw
        self.request: ChatRequest = parsed if parsed is not None else summary(body, dialect)
        self._parsed: ChatRequest | InvalidRequest | None = parsed
        self._translations: dict[tuple[str, str], bytes] = {}

    def relays_to(self, wire_type: str) -> bool:
        return wire_type == self.dialect

    def canonical(self) -> ChatRequest:
        """The canonical request, parsed by the caller's codec on first use; its 400 when it cannot be.

        Shared by the threads of a worker (a remembered body): two may parse at once, to equal results.
        """
        parsed = self._parsed
        if parsed is None:
            try:
                parsed = CODECS[self.dialect].parse_request(self.body)
            except InvalidRequest as err:
                parsed = err
            self._parsed = parsed
        if isinstance(parsed, InvalidRequest):  # a fresh copy: one raised many times would keep its tracebacks
            raise InvalidRequest(parsed.message, param=parsed.param)
        return parsed

    def translation(self, wire_type: str, model: str, build: Callable[[ChatRequest], bytes]) -> bytes:
        """The body a translated target gets, built by ``build`` from ``canonical()`` once per wire format
        and model, then remembered with the body: a remembered body's cache hits translate nothing."""
        key = (wire_type, model)
        sent = self._translations.get(key)
        if sent is None:
            sent = build(self.canonical())
            if len(self._translations) < _MAX_TRANSLATIONS:
                self._translations[key] = sent
        return sent

    def owns(self, req: ChatRequest) -> bool:
        """``req`` is this body's: its ``request`` or its canonical parse."""
        return req is self.request or req is self._parsed

    def parsed_if_possible(self) -> ChatRequest:
        """The canonical request when the body has one, else ``request`` (for what only reads it)."""
        try:
            return self.canonical()
        except InvalidRequest:
            return self.request

    @property
    def wants_usage(self) -> bool:
        """An OpenAI stream whose caller asked for the usage chunk itself."""
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


# --- Requests ----------------------------------------------------------------------------------------


def check_body(body: dict[str, Any], dialect: str) -> None:
    """What the gateway needs of a relayed body (400 naming the field); the content is the provider's to judge."""
    as_model(body.get("model"))
    as_list(required(body, "messages", "messages"), "messages", nonempty=True)
    opt_bool(body, "stream", "stream")
    if dialect == "anthropic":
        as_int(required(body, "max_tokens", "max_tokens"), "max_tokens", minimum=1, maximum=INT32_MAX)
        opt_number(body, "temperature", "temperature", low=0, high=1)
        opt_number(body, "top_p", "top_p", low=0, high=1)
        opt_obj(body, "metadata", "metadata")
        anthropic_codec._check_sampling(body)  # the hardening's bounds, one definition
        return
    for key in ("max_tokens", "max_completion_tokens"):
        opt_int(body, key, key, minimum=1, maximum=INT32_MAX)
    opt_int(body, "n", "n", minimum=1, maximum=INT32_MAX)
    opt_number(body, "temperature", "temperature", low=0, high=2)
    opt_number(body, "top_p", "top_p", low=0, high=1)
    options = opt_obj(body, "stream_options", "stream_options") or {}
    opt_bool(options, "include_usage", "stream_options.include_usage")
    openai_codec._check_sampling(body)


def summary(body: dict[str, Any], dialect: str) -> ChatRequest:
    """What the pipeline reads of a body before (or without) parsing it: model, delivery, the output
    allowance and the sampling fields a trace records; ``messages`` stay unparsed (empty here).

    Only for a body ``check_body`` accepted: the fields it read are already known to be well formed.
    """
    stream = body.get("stream") is True
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    options = body.get("stream_options")
    usage = dialect == "openai" and stream and isinstance(options, dict) and options.get("include_usage") is True
    stop = body.get("stop_sequences" if dialect == "anthropic" else "stop")
    if isinstance(stop, str):
        stops: tuple[str, ...] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        stops = ()
    return ChatRequest(model=body["model"], messages=(), max_tokens=limit, temperature=body.get("temperature"),
                       top_p=body.get("top_p"), stop=stops, stream=stream, include_usage=usage,
                       source_format=dialect)  # type: ignore[arg-type]


def upstream_body(source: CallerBody, model: str) -> bytes:
    """The bytes a relayed attempt sends: the caller's, unless ``model`` or the usage request must change."""
    body = source.body
    add_usage = source.dialect == "openai" and body.get("stream") is True and not source.wants_usage
    if body.get("model") == model and not add_usage:
        return source.raw
    out = dict(body)
    out["model"] = model
    if add_usage:
        options = body.get("stream_options")
        out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    try:
        return orjson.dumps(out)
    except TypeError as exc:  # e.g. an integer beyond 64 bits in a field the gateway does not know
        raise InvalidRequest(f"Request body cannot be relayed: {exc}", param="body") from None


# --- Streams -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayedEvent:
    """One SSE event as the provider sent it (``raw``, blank line included), and what the observer read in it."""

    dialect: str
    raw: bytes
    events: tuple[StreamEvent, ...] = ()


# An event ends at a blank line: two line ends in a row (\r\n, \n or \r).
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


class EventSplitter:
    """Provider bytes, split anywhere, as whole SSE events (each with its terminating blank line)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf
        scan_from = max(0, len(buf) - 3)  # a line end may straddle the chunk boundary
        buf += chunk
        # A trailing \r may be the first half of \r\n: not a line end until the next byte says so.
        end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        out: list[bytes] = []
        pos = 0
        for match in _EVENT_END.finditer(buf, scan_from, end):
            if match.start() < pos:
                continue
            out.append(bytes(buf[pos:match.end()]))
            pos = match.end()
        del buf[:pos]
        return out

    def flush(self) -> bytes:
        """What is left at EOF: an event whose blank line never came (or nothing)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def observe_stream(chunks: Iterable[bytes], dialect: str) -> Iterator[RelayedEvent]:
    """A provider's SSE bytes as ``RelayedEvent``s, each carrying the canonical events the codec read in it.

    The codec's ``StreamDecoder`` is the observer: it raises ``UpstreamError`` for a provider's
    error event (``ProviderErrorEvent``: the event itself still goes to the caller first) and for a
    stream cut before its end.
    """
    splitter = EventSplitter()
    parser = SSEParser()
    decoder = CODECS[dialect].StreamDecoder()

    def read(raw: bytes) -> RelayedEvent:
        events: list[StreamEvent] = []
        try:
            for sse in parser.feed(raw):
                events.extend(decoder.feed(sse))
        except UpstreamError as err:
            if not is_error_event(raw):
                raise  # garbage: not passed on; the stream ends with the gateway's error event
            raise ProviderErrorEvent(RelayedEvent(dialect, raw, tuple(events)), err) from None
        return RelayedEvent(dialect, raw, tuple(events))

    for chunk in chunks:
        for raw in splitter.feed(chunk):
            yield read(raw)
    rest = splitter.flush()
    if rest:
        yield read(rest)
    tail: list[StreamEvent] = []
    for sse in parser.flush():
        tail.extend(decoder.feed(sse))
    tail.extend(decoder.finish())
    if tail:
        yield RelayedEvent(dialect, b"", tuple(tail))


class ProviderErrorEvent(Exception):
    """The provider's stream said something the observer refuses (its error event, garbage): the event
    goes to the caller as it came, then the stream ends with ``error``."""

    def __init__(self, event: RelayedEvent, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.event = event
        self.error = error


_ERROR_EVENT = re.compile(rb'^event:\s*error\s*$|^data:\s*\{\s*"(?:type"\s*:\s*"error|error)"', re.MULTILINE)


def is_error_event(raw: bytes) -> bool:
    """An Anthropic ``event: error`` or an OpenAI ``data: {"error": ...}`` chunk."""
    return _ERROR_EVENT.search(raw) is not None


def split_events(raw: bytes) -> list[bytes]:
    """A stored stream body as its events (for cache replays)."""
    splitter = EventSplitter()
    out = splitter.feed(raw)
    rest = splitter.flush()
    return [*out, rest] if rest else out


# --- OpenAI: what the gateway added to a stream --------------------------------------------------------

_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def strip_added_usage(raw: bytes) -> bytes:
    """An OpenAI stream event without the usage the gateway asked for and its caller did not.

    The usage-only chunk (``"choices": []``) goes entirely; other chunks lose their
    ``"usage":null`` (cut out of the bytes, nothing else re-encoded). A server that puts usage on a chunk
    that also has choices gets that chunk re-encoded without it.
    """
    if _USAGE_OBJECT.search(raw) is not None:
        return _without_usage_object(raw)
    if b'"usage"' not in raw:
        return raw
    return _NULL_USAGE.sub(b"", raw)


def _without_usage_object(raw: bytes) -> bytes:
    lines = raw.splitlines(keepends=True)
    data = b"".join(line[5:].lstrip(b" ").rstrip(b"\r\n") for line in lines if line.startswith(b"data:"))
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(chunk, dict):
        return raw
    if not chunk.get("choices"):
        return b""  # the usage-only chunk
    chunk.pop("usage", None)
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def replay_stream(raw: bytes, dialect: str) -> Iterator[RelayedEvent]:
    """A stored relayed stream, event by event as it was received, observed as a live one is."""
    return observe_stream((raw,), dialect)

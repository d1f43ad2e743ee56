"""Same dialect on both sides: the caller's JSON goes upstream as it came, the answer comes back as it came.

When the caller's API and the target's wire format are the same (an OpenAI
caller and an OpenAI-format provider, an Anthropic caller and an
Anthropic-format provider) nothing is translated:

* **request**: the caller's body, with only ``model`` rewritten where an alias
  maps it and, for OpenAI streams, ``stream_options.include_usage: true`` so
  tokens are counted. When neither changes anything the caller's bytes go
  upstream untouched (``upstream_body``);
* **answer**: the provider's JSON bytes, and each SSE event's bytes as they
  arrive (``RelayedEvent``: the events of one read together), while the codec's
  own reader observes them for accounting, tracing and the cache: the start and
  the end (usage, stop reason), tool input, errors and the first token; the text
  deltas are recognised by their bytes and not read (``_NEEDS_READING``);
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
from typing import Any, NamedTuple

import orjson

from app.errors import InvalidRequest, UpstreamError
from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.formats import responses as responses_codec
from app.formats.canonical import ChatRequest, StreamEnd, StreamEvent, StreamStart, TextDelta, ToolUseStart
from app.formats.common import (
    INT32_MAX,
    as_int,
    as_list,
    as_model,
    json_object,
    opt_bool,
    opt_int,
    opt_number,
    opt_obj,
    required,
)
from app.formats.sse import SSEParser

CODECS = {"openai": openai_codec, "anthropic": anthropic_codec, "responses": responses_codec}


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

    def __init__(self, dialect: str, body: dict[str, Any], raw: bytes,
                 parsed: ChatRequest | InvalidRequest | None = None, request: ChatRequest | None = None) -> None:
        """``parsed``: the canonical request when already made, or the 400 a translated target gets;
        ``request``: what the pipeline reads, when the caller made it (else the parse, else ``summary``)."""
        self.dialect = dialect
        self.body = body
        self.raw = raw
        if request is None:
            request = parsed if isinstance(parsed, ChatRequest) else summary(body, dialect)
        self.request: ChatRequest = request
        self._parsed: ChatRequest | InvalidRequest | None = parsed
        self._translations: dict[tuple[str, str], bytes] = {}

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


class RecalledBody(CallerBody):
    """A remembered body read again from its bytes only when something needs more than its summary.

    The parse memo keeps a body too big to keep parsed as its summary and cache keys
    (``app/http/resources/parse_memo.py``); a hit needs nothing else. The bytes are the
    same ones that were read and checked before, so a miss or a translated target that
    reads ``body`` gets what the first read gave.
    """

    __slots__ = ()

    def __init__(self, dialect: str, raw: bytes, request: ChatRequest) -> None:
        super().__init__(dialect, {}, raw, request=request)
        del self.body  # unset: the first read of ``body`` comes to ``__getattr__``

    def __getattr__(self, name: str) -> Any:
        if name != "body":
            raise AttributeError(name)
        self.body = body = json_object(self.raw)
        return body


# --- Requests ----------------------------------------------------------------------------------------


def check_body(body: dict[str, Any], dialect: str) -> None:
    """What the gateway needs of a relayed body (400 naming the field); the content is the provider's to judge."""
    if dialect == "responses":
        responses_codec.check_body(body)
        return
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


class RelayedEvent(NamedTuple):
    """SSE events as the provider sent them (``raw``: whole events, blank lines included; all the events one
    read brought, so they go out in one write), and what the observer read in them.

    ``events`` holds only what accounting, tracing and the cache need: the stream's start (id, model,
    input usage) and its end (stop reason, usage). ``first_token``: the first text or tool call is in
    ``raw`` (time to first token). The text itself is not read: the caller and the cache get the bytes.
    A named tuple: one is made per read of every relayed stream, and a tuple is the cheapest to make.
    """

    dialect: str
    raw: bytes
    events: tuple[StreamEvent, ...] = ()
    first_token: bool = False


# An event ends at a blank line: two line ends in a row (\r\n, \n or \r).
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


class EventSplitter:
    """Provider bytes, split anywhere, as whole SSE events (each with its terminating blank line)."""

    def __init__(self) -> None:
        self.pending = bytearray()  # the start of an event whose blank line has not come yet

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self.pending
        if chunk.find(b"\r") < 0:
            if not buf:
                return self._feed_lf(chunk)
            if buf.find(b"\r") < 0:  # an event cut by the last read: joined, then searched the same way
                held = bytes(buf)
                buf.clear()
                return self._feed_lf(held + chunk)
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

    def _feed_lf(self, chunk: bytes) -> list[bytes]:
        """The usual case, nothing held and \n line ends only: events found by a plain search (a chunk
        that is one whole event is that event, not a copy)."""
        out: list[bytes] = []
        pos = 0
        while (end := chunk.find(b"\n\n", pos)) >= 0:
            out.append(chunk if end + 2 == len(chunk) and not pos else chunk[pos:end + 2])
            pos = end + 2
        if pos < len(chunk):
            self.pending += chunk[pos:]
        return out

    def flush(self) -> bytes:
        """What is left at EOF: an event whose blank line never came (or nothing)."""
        rest = bytes(self.pending)
        self.pending.clear()
        return rest


# --- What the observer must read, found without reading the JSON --------------------------------------

_EVENT_NAME = re.compile(rb"event:[ \t]*([^\r\n]*)")
# An OpenAI chunk that may carry more than text: a tool call, a finish or refusal (non-null), a usage
# object, an error. Inside a JSON string a quote is escaped, so text never matches; a false match only
# costs a reading.
_OPENAI_MORE_THAN_TEXT = re.compile(
    rb'"(?:tool_calls|error)"|"(?:finish_reason|refusal)"\s*:\s*"|"usage"\s*:\s*\{')


def _anthropic_needs_reading(raw: bytes) -> bool:
    """All but ``ping`` and the text, thinking and signature deltas (tool input is read: the end checks it
    is JSON); an event without an ``event:`` line, or one whose data says error, is read."""
    if _anthropic_plain(raw):
        return False
    found = _EVENT_NAME.match(raw)
    if found is None:
        return True
    name = found.group(1).rstrip()
    if name == b"ping":
        return False
    if name != b"content_block_delta":
        return True
    return raw.find(b"input_json_delta") >= 0 or is_error_event(raw)


def _openai_needs_reading(raw: bytes) -> bool:
    """Chunks that may carry a tool call, a finish, a refusal, usage, an error, and the ``[DONE]`` end."""
    if _openai_plain(raw):
        return False
    return raw.find(b"[DONE]") >= 0 or _OPENAI_MORE_THAN_TEXT.search(raw) is not None


# --- Text passed on without a look at its events ------------------------------------------------------
# Most reads of a long answer bring whole text events. These checks recognise them (and that the read
# ends an event), as their providers write them, with a few substring tests over the whole read (no
# split, no regular expression). They may say no to text (other spacing, a server's own layout): the events
# are then split and checked one by one (``_NEEDS_READING``), which decides. They never say yes to what
# must be read.
# Why the read is decoded first: ``bytes.find``, ``count`` and ``startswith`` parse their arguments as a
# tuple (about 1,000 instructions a call in CPython 3.11) and ``bytes in bytes`` raises and clears a
# TypeError before it searches (about 4,300); ``str in str`` costs about 550, so one decode (about 700)
# pays for itself from the second test on. A read that is not UTF-8 is split and checked.

_ANTHROPIC_TEXT = (b'event: content_block_delta\ndata: {"type":"content_block_delta"',
                   b'event: content_block_delta\ndata: {"type": "content_block_delta"')


def _anthropic_plain(chunk: bytes) -> bool:
    """One ``content_block_delta`` event whose data is one (and not tool input)."""
    event = chunk.removesuffix(b"\n\n")
    if event is chunk or not chunk.startswith(_ANTHROPIC_TEXT):
        return False
    try:
        text = event.decode()
    except UnicodeDecodeError:
        return False
    # The read's first blank line is its end: one whole event.
    return "\n\n" not in text and text[-1] != "\n" and "input_json_delta" not in text


def _openai_plain(chunk: bytes) -> bool:
    """Whole chunks whose finish reasons, refusals and usage are all ``null`` (as OpenAI writes them), with no
    tool call, error or ``[DONE]``."""
    if chunk.removesuffix(b"\n\n") is chunk:
        return False
    try:
        text = chunk.decode()
    except UnicodeDecodeError:
        return False
    if '"tool_calls"' in text or '"error"' in text or "[DONE]" in text:
        return False
    # Each of these keys null wherever it is: with every ``":null`` cut out, a null key has lost its closing
    # quote and any other is still whole (a quote inside a JSON string is escaped: text never matches).
    text = text.replace('":null', "")
    return '"finish_reason"' not in text and '"usage"' not in text and '"refusal"' not in text


_RESPONSES_TEXT = (b"event: response.output_text.delta\n", b"event: response.reasoning_text.delta\n",
                   b"event: response.reasoning_summary_text.delta\n")


def _responses_plain(chunk: bytes) -> bool:
    """One text or reasoning delta event."""
    return chunk.startswith(_RESPONSES_TEXT) and chunk.find(b"\n\n") == len(chunk) - 2


_PLAIN = {"openai": _openai_plain, "anthropic": _anthropic_plain, "responses": _responses_plain}


_RESPONSES_UNREAD = frozenset({b"response.output_text.delta", b"response.reasoning_text.delta",
                               b"response.reasoning_summary_text.delta"})


def _responses_needs_reading(raw: bytes) -> bool:
    """All but the text and reasoning deltas (found by their ``event:`` line; an event without one is read):
    the usage and the end come in ``response.completed``, failures in their own events."""
    if _responses_plain(raw):
        return False
    found = _EVENT_NAME.match(raw)
    return found is None or found.group(1).rstrip() not in _RESPONSES_UNREAD


_NEEDS_READING = {"openai": _openai_needs_reading, "anthropic": _anthropic_needs_reading,
                  "responses": _responses_needs_reading}
_KEPT = (StreamStart, StreamEnd)
_FIRST_TOKEN = (TextDelta, ToolUseStart)


class _Observer:
    """The codec's ``StreamDecoder`` over the events it needs: every event until the first token, then
    only those that can carry usage, a stop reason, tool input or an error (``_NEEDS_READING``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._parser = SSEParser()
        self._decoder = CODECS[dialect].StreamDecoder()
        self.needs_reading = _NEEDS_READING[dialect]
        self.token_seen = False

    def read(self, raws: list[bytes]) -> Iterator[RelayedEvent]:
        """The events of one read as one ``RelayedEvent``; an error event ends it (``ProviderErrorEvent``),
        after the events before it, which are yielded on their own."""
        kept: list[StreamEvent] = []
        first_token = False
        for i, raw in enumerate(raws):
            if self.token_seen and not self.needs_reading(raw):
                continue
            try:
                events = [ev for sse in self._parser.feed(raw) for ev in self._decoder.feed(sse)]
            except UpstreamError as err:
                if not is_error_event(raw):
                    raise  # garbage: not passed on; the stream ends with the gateway's error event
                if i:
                    yield RelayedEvent(self.dialect, b"".join(raws[:i]), tuple(kept), first_token)
                raise ProviderErrorEvent(RelayedEvent(self.dialect, raw), err) from None
            for ev in events:
                if isinstance(ev, _KEPT):
                    kept.append(ev)
                elif not self.token_seen and isinstance(ev, _FIRST_TOKEN):
                    self.token_seen = first_token = True
        yield RelayedEvent(self.dialect, raws[0] if len(raws) == 1 else b"".join(raws), tuple(kept), first_token)

    def finish(self) -> tuple[StreamEvent, ...]:
        """At EOF: the end the decoder still holds (it raises for a stream cut before its end)."""
        tail = [ev for sse in self._parser.flush() for ev in self._decoder.feed(sse)]
        tail.extend(self._decoder.finish())
        return tuple(ev for ev in tail if isinstance(ev, _KEPT))


def observe_stream(chunks: Iterable[bytes], dialect: str) -> Iterator[bytes | RelayedEvent]:
    """A provider's SSE bytes, one item per read: ``bytes`` for whole events after the first token that need
    no reading (passed on unread: the usual read of a long answer), else a ``RelayedEvent`` with the start
    and end the codec read.

    The codec's ``StreamDecoder`` is the observer: it raises ``UpstreamError`` for a provider's
    error event (``ProviderErrorEvent``: the event itself still goes to the caller first) and for a
    stream cut before its end.
    """
    splitter = EventSplitter()
    held = splitter.pending
    observer = _Observer(dialect)
    needs_reading = observer.needs_reading
    plain = _PLAIN[dialect]
    for chunk in chunks:
        if observer.token_seen and not held and plain(chunk):
            yield chunk
            continue
        raws = splitter.feed(chunk)
        if len(raws) == 1 and observer.token_seen and not needs_reading(raws[0]):
            yield raws[0]  # text in another layout, or split across reads: passed on unread
        elif raws:
            yield from observer.read(raws)
    rest = splitter.flush()
    if rest:
        yield from observer.read([rest])
    tail = observer.finish()
    if tail:
        yield RelayedEvent(dialect, b"", tail)


class ProviderErrorEvent(Exception):
    """The provider's stream said something the observer refuses (its error event, garbage): the event
    goes to the caller as it came, then the stream ends with ``error``."""

    def __init__(self, event: RelayedEvent, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.event = event
        self.error = error


_ERROR_EVENT = re.compile(rb'^event:\s*(?:error|response\.failed)\s*$|^data:\s*\{\s*"(?:type"\s*:\s*"error|error)"',
                          re.MULTILINE)


def is_error_event(raw: bytes) -> bool:
    """An Anthropic ``event: error``, an OpenAI ``data: {"error": ...}`` chunk, a Responses ``error`` or
    ``response.failed`` event."""
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
    """OpenAI stream events (one or several whole ones) without the usage the gateway asked for and its
    caller did not.

    The usage-only chunk (``"choices": []``) goes entirely; other chunks lose their
    ``"usage":null`` (cut out of the bytes, nothing else re-encoded). A server that puts usage on a chunk
    that also has choices gets that chunk re-encoded without it.
    """
    # As OpenAI writes it, in one plain replace (a quote inside a JSON string is escaped: text never matches);
    # without one, ``replace`` hands back ``raw`` itself.
    compact = raw.replace(b',"usage":null', b"")
    if compact.find(b'"usage"') < 0:
        return compact
    if _USAGE_OBJECT.search(raw) is not None:
        events = split_events(raw)
        if len(events) > 1:
            return b"".join(strip_added_usage(event) for event in events)
        return _without_usage_object(raw)
    return _NULL_USAGE.sub(b"", compact)


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


def replay_stream(raw: bytes, dialect: str) -> Iterator[bytes | RelayedEvent]:
    """A stored relayed stream, as it was received, observed as a live one is (all of it one read: one write)."""
    return observe_stream((raw,), dialect)

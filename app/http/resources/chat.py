"""POST /v1/chat/completions and POST /v1/messages: one resource, two codecs.

The resource reads and checks the body (a body it has seen before comes from
its ``ParseMemo``), hands it to the pipeline, and renders what comes back in the
caller's dialect: JSON, or SSE through ``resp.stream`` (a generator).

The body goes along as it came (``CallerBody``): targets that speak the
caller's dialect get it relayed (``app/formats/relay.py``), and their answer
comes back as the provider's bytes, written as they are. The resource checks
only what the gateway itself needs (``relay.check_body``); the canonical
request is parsed when a translated target needs it, so a relayed request
never pays for it. A body the canonical model cannot hold (a text-source
document block, a ``search_result`` block, ``n: 2``) is still relayed; only a
translated target refuses it, with the codec's 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import falcon
import orjson

from app.cache.control import TTL_ENVIRON, CacheControl
from app.context import RequestContext
from app.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    ShuttingDown,
    UnsupportedMediaType,
    UpstreamError,
)
from app.formats import relay
from app.formats.canonical import TextDelta, ToolUseStart
from app.formats.common import json_object
from app.formats.relay import CallerBody, RelayedEvent
from app.http.caller_headers import forwarded_headers
from app.http.draining import DrainState
from app.http.resources.parse_memo import ParsedBody, ParseMemo
from app.pipeline import Outcome, Pipeline
from app.resilience.disconnects import CLIENT_GONE, CLIENT_GONE_STATUS, ClientGone, DisconnectWatcher

log = logging.getLogger("llm_edge.chat")



def read_body(req: falcon.Request, max_bytes: int) -> bytes:
    """The raw request body, or the 413 / 415 / 400 that explains why not.

    A body sent with ``Transfer-Encoding: chunked`` has no Content-Length, so Falcon's bounded stream
    holds nothing: it is read from the server's de-chunked input instead, up to the same limit.
    """
    content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got '{content_type}'")
    length = req.content_length
    if length is not None and length > max_bytes:
        _discard(req.bounded_stream, length)
        raise PayloadTooLarge(f"Request body is {length} bytes; the limit is {max_bytes} (MAX_REQUEST_BYTES)")
    chunked = length is None and "chunked" in req.env.get("HTTP_TRANSFER_ENCODING", "").lower()
    stream = req.stream if chunked else req.bounded_stream
    try:
        raw = stream.read(max_bytes + 1)
    except Exception as exc:  # the server's chunked reader: a malformed chunk, or the client gone mid-body
        if not chunked:
            raise
        raise InvalidRequest(f"Request body is not valid chunked encoding ({type(exc).__name__})",
                             param="body") from None
    if len(raw) > max_bytes:
        if chunked:
            _discard(stream, _DISCARD_LIMIT)
        raise PayloadTooLarge(f"Request body is over the limit of {max_bytes} bytes (MAX_REQUEST_BYTES)")
    if not raw:
        raise InvalidRequest("Request body is empty; expected a JSON object", param="body")
    return raw


# Bodies up to this size are read and thrown away before a 413, so the client, still
# sending, sees the answer instead of a reset connection; larger ones are cut off.
_DISCARD_LIMIT = 64 * 1024 * 1024


def _discard(stream: Any, length: int) -> None:
    """Read and drop up to ``length`` bytes (none past ``_DISCARD_LIMIT``); a broken body just ends it."""
    if length > _DISCARD_LIMIT:
        return
    left = length
    try:
        while left > 0:
            data = stream.read(min(256 * 1024, left))
            if not data:
                return
            left -= len(data)
    except Exception:  # a malformed chunk or a client gone: nothing more to drop
        return


class ChatResource:
    def __init__(self, codec: ModuleType, pipeline: Pipeline, max_request_bytes: int,
                 watcher: DisconnectWatcher | None = None, draining: DrainState | None = None, *,
                 forward_openai_org: bool = False) -> None:
        self.codec = codec
        self.dialect: str = codec.FORMAT
        self.draining = draining or DrainState()
        self.pipeline = pipeline
        self.max_request_bytes = max_request_bytes
        self.watcher = watcher or DisconnectWatcher()
        self.forward_openai_org = forward_openai_org
        self.memo = ParseMemo(self._parse)

    def _parse(self, raw: bytes) -> ParsedBody:
        """The body as it came and what the pipeline reads of it; the canonical request is parsed later, and
        only if a translated target needs it (``CallerBody.canonical``). A body that is wrong even for a
        relay gets the codec's own 400."""
        body = json_object(raw)
        try:
            relay.check_body(body, self.dialect)
        except InvalidRequest:
            request = self.codec.parse_request(body)  # raises: the codec's words for what is wrong
            source = CallerBody(self.dialect, body, raw, request)  # (the codec accepted what the check did not)
            return ParsedBody(request, source=source)
        source = CallerBody(self.dialect, body, raw)
        return ParsedBody(source.request, source=source)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx: RequestContext = req.context.gw
        parsed = self.memo.parse(read_body(req, self.max_request_bytes))
        ctx.parsed = parsed
        creq = parsed.request
        ctx.stream = creq.stream
        ctx.forward = forwarded_headers(req.env, self.forward_openai_org)
        control = CacheControl.from_headers(req.env.get("HTTP_CACHE_CONTROL"), req.env.get(TTL_ENVIRON))
        try:
            outcome = self.pipeline.run(ctx, creq, control, req.env.get("gunicorn.socket"), parsed.source)
        except ClientGone:  # hung up while the provider was awaited: nothing to answer (finish records it)
            resp.status = ctx.status = CLIENT_GONE_STATUS
            ctx.error_type = CLIENT_GONE
            return
        if outcome.response is not None:
            resp.content_type = "application/json"
            if outcome.raw is not None:  # relayed: the provider's bytes as they came
                resp.data = outcome.raw
            else:
                resp.data = orjson.dumps(self.codec.render_response(outcome.response))
            return
        resp.content_type = "text/event-stream"
        resp.set_header("cache-control", "no-cache")
        resp.set_header("x-accel-buffering", "no")
        resp.stream = self._sse(ctx, outcome, self.codec.StreamEncoder(include_usage=creq.include_usage),
                                req.env.get("gunicorn.socket"),
                                strip_usage=self.dialect == "openai" and not creq.include_usage)
        ctx.streaming = True  # until the generator hands out the stream's end; the request's finish reads it

    @staticmethod
    def _relayed(ctx: RequestContext, item: RelayedEvent, strip_usage: bool) -> bytes:
        """A relayed event's bytes, less the usage the gateway added. Only a caller of the events' own
        dialect gets them: the cache and coalescing keys of a relayed request carry its dialect."""
        if item.first_token and ctx.first_token_at is None:
            ctx.first_token_at = time.monotonic()
        return relay.strip_added_usage(item.raw) if strip_usage and item.raw else item.raw

    def _sse(self, ctx: RequestContext, outcome: Outcome, encoder: Any, client: Any,
             strip_usage: bool = False) -> Iterator[bytes]:
        """The caller's SSE, translated event by event; a late failure ends it with an error event.

        While it runs, the client's socket is watched: a client that hangs up
        aborts the upstream read at once, freeing this thread. A worker whose
        drain time runs out (SIGTERM) aborts it too, and the stream ends with
        an error event the SDKs raise, not with a cut body. It only says how
        the stream ended (``ctx.streaming`` cleared once its end is handed out,
        ``ctx.status`` for an error event); the request's ``Exchange.finish``
        records it, a client gone included.
        """
        stop_watching = self.watcher.watch(client, outcome.abort)
        cut: list[bool] = []  # a list, not a threading.Event: its test is no call, once per event

        def on_cut() -> None:
            cut.append(True)
            outcome.abort()

        release = self.draining.hold_stream(on_cut)
        try:
            assert outcome.events is not None
            for ev in outcome.events:
                if cut:  # a stream abort() cannot stop (a replay, a coalesced follower)
                    raise ClientGone()
                if type(ev) is bytes:  # relayed text the observer did not look into
                    if strip_usage:  # relay.strip_added_usage, its usual case written out
                        ev = ev.replace(b',"usage":null', b"")
                        if ev.find(b'"usage"') >= 0:
                            ev = relay.strip_added_usage(ev)
                    if ev:
                        yield ev
                    continue
                if isinstance(ev, RelayedEvent):
                    chunk = self._relayed(ctx, ev, strip_usage)
                    if chunk:
                        yield chunk
                    continue
                if ctx.first_token_at is None and isinstance(ev, (TextDelta, ToolUseStart)):
                    ctx.first_token_at = time.monotonic()
                chunk = encoder.encode(ev)
                if chunk:
                    yield chunk
            ctx.streaming = False
        except ClientGone:
            if cut:
                err = ShuttingDown("The gateway is restarting and ended this stream before it was complete; "
                                   "retry the request")
                ctx.status, ctx.error_type = err.status, err.code
                yield encoder.error(err)
                ctx.streaming = False
            # else: still streaming, the client left: the finish records a disconnect
        except GatewayError as err:
            ctx.status, ctx.error_type = err.status, err.code
            if not getattr(err, "event_sent", False):  # a relay passed the provider's own error event on
                yield encoder.error(err)
            ctx.streaming = False
        except Exception:
            log.exception("stream failed", extra={"fields": {"request_id": ctx.request_id}})
            ctx.status, ctx.error_type = 500, "internal_error"
            yield encoder.error(UpstreamError("The gateway failed while streaming the answer"))
            ctx.streaming = False
        finally:
            release()
            stop_watching()
            outcome.close()

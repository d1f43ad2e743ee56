"""The terminal stage: one attempt at one target, in that provider's wire format.

It turns the canonical request into the provider's body, sends it, and turns
the answer back into canonical form: a ``ChatResponse``, or for streams an
``EventStream`` of canonical events decoded as the bytes arrive. Provider
statuses become gateway errors here and nowhere else.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
import urllib3

from app.config.settings import Settings
from app.errors import BAD_RESPONSE, GatewayError, UpstreamError, UpstreamRejected
from app.formats import relay
from app.formats.canonical import ChatRequest, ChatResponse, StreamEvent
from app.formats.relay import CallerBody, ProviderErrorEvent, RelayedEvent
from app.formats.stream import decode_sse
from app.providers import azure
from app.providers.http import FIRST_BYTE_LIMIT, READ_LIMIT, UpstreamAbort, UpstreamHTTP
from app.providers.platforms import adapter_for, current_secrets
from app.providers.routing import Target
from app.providers.wire import WIRE_FORMATS
from app.resilience.disconnects import ClientGone

# Provider statuses that are the caller's to fix: passed back with the provider's message.
_PASS_BACK = {400, 404, 409, 413, 422, 429}

# Sees a provider's response headers (the request id, its rate-limit state) as soon as they are in.
HeaderNote = Callable[[Mapping[str, str]], None]


# Every provider key of this process (``register_keys``, from create_gateway): a provider may quote any text
# it was given, a key of another provider included (a fallback's request, a shared proxy), so each error
# is scrubbed of all of them, not only its own target's.
_KEYS: set[str] = set()


def register_keys(keys: Iterable[str | None]) -> None:
    """The provider keys that no error text may carry on to a caller or a log."""
    _KEYS.update(k for k in keys if k)


def redact(text: str, target: Target) -> str:
    """``text`` with the target's key and every registered provider key masked (any case, base64 forms)."""
    for key in {target.provider.api_key, *_KEYS, *current_secrets()} - {None, ""}:
        text = key_pattern(key).sub("[redacted]", text)  # type: ignore[arg-type]
    return text


def without_key(err: GatewayError, target: Target) -> GatewayError:
    """Providers may quote the key they were sent in an error; it never travels on to a caller or a log.

    Any case (``SK-ABC...``) and base64 forms (as in a ``Basic`` header a provider echoes) are
    masked too, not only the verbatim key; so are the other providers' keys.
    """
    masked = redact(err.message, target)
    if masked != err.message:
        err.message = masked
        err.args = (masked,)
    return err


@functools.lru_cache(maxsize=16)
def key_pattern(key: str) -> re.Pattern[str]:
    """The key in any case, or its base64 (standard or URL-safe) at any byte alignment."""
    raw = key.encode()
    forms = {re.escape(key)}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw).decode()
            # Only the characters that depend on the key alone, whatever comes before or after it.
            part = text[(shift + 2) // 3 * 4:(shift + len(raw)) // 3 * 4]
            if len(part) >= 8:
                forms.add(re.escape(part))
    base64_forms = "|".join(sorted(forms - {re.escape(key)}, key=len, reverse=True))
    return re.compile(f"(?i:{re.escape(key)})" + (f"|{base64_forms}" if base64_forms else ""))


def _retry_after(resp: urllib3.BaseHTTPResponse) -> float | None:
    raw = resp.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


class EventStream:
    """Canonical events from a provider's SSE body; ``close()`` drops the connection.

    ``abort()`` may be called from another thread (the disconnect watcher): it
    shuts the socket so the read blocked in this stream returns at once, and
    the stream then ends with ``ClientGone`` instead of an upstream error.
    """

    def __init__(self, target: Target, resp: urllib3.BaseHTTPResponse, chunks: Iterator[bytes],
                 decoder: Any, relay_dialect: str | None = None) -> None:
        self.target = target
        self._resp = resp
        self._chunks = chunks
        self._decoder = decoder
        self._relay = relay_dialect
        self._events = self._decode() if relay_dialect is None else self._relayed(relay_dialect)
        self._aborted = False

    def _decode(self) -> Iterator[StreamEvent]:
        try:
            yield from decode_sse(self._chunks, self._decoder)
        except GatewayError as err:
            raise self._failed(without_key(err, self.target)) from None

    def _relayed(self, dialect: str) -> Iterator[bytes | RelayedEvent]:
        """Relay: the provider's events as they came; its own error event goes on, then the stream ends.

        An error event first of all is an attempt that failed before it started: raised, so the pipeline
        retries or falls back as for a translated stream.
        """
        started = False
        try:
            events = relay.observe_stream(self._chunks, dialect)
            for ev in events:
                started = True
                yield ev
                break
            yield from events
        except ProviderErrorEvent as signal:
            if not started:
                raise self._failed(without_key(signal.error, self.target)) from None
            ev = signal.event
            yield RelayedEvent(ev.dialect, redact(ev.raw.decode("utf-8", "replace"), self.target).encode(), ev.events,
                               ev.first_token)
            err = without_key(signal.error, self.target)
            err.event_sent = True  # the caller has the provider's own error event: nothing more to send
            raise self._failed(err) from None
        except GatewayError as err:
            raise self._failed(without_key(err, self.target)) from None

    def _failed(self, err: GatewayError) -> Exception:
        """A read that failed because ``abort()`` shut it is the client's leaving, not the provider's fault."""
        return ClientGone() if self._aborted else err

    def __iter__(self) -> Iterator[Any]:
        """The events themselves (one generator: no method call per event)."""
        return self._events

    def __next__(self) -> Any:
        return next(self._events)

    def abort(self) -> None:
        self._aborted = True
        try:
            self._resp.shutdown()
        except (OSError, RuntimeError, ValueError):
            pass  # already finished or released: nothing left to stop

    def close(self) -> None:
        self._events.close()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class UpstreamCaller:
    """Sends canonical requests to targets over the worker's shared connection pools."""

    def __init__(self, http: UpstreamHTTP, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    def body(self, target: Target, req: ChatRequest) -> dict[str, Any]:
        """The provider's request body; the 400 naming a field that target's format cannot express."""
        codec = WIRE_FORMATS[target.provider.type].codec
        return codec.build_request(req, target.model, default_max_tokens=self.settings.default_max_tokens)

    def payload(self, target: Target, req: ChatRequest, source: CallerBody | None = None) -> bytes:
        """The bytes an attempt at ``target`` sends: the caller's own (relayed) when ``target`` speaks its
        dialect, else the translation of its canonical request (the 400 naming a field the target's
        format cannot express, or that the canonical model cannot hold)."""
        if source is not None:
            if target.provider.speaks(source.dialect):
                return relay.upstream_body(source, target.model)
            return source.translation(target.provider.type, target.model,
                                      lambda req: orjson.dumps(self.body(target, req)))
        return orjson.dumps(self.body(target, req))

    def _send(self, target: Target, req: ChatRequest, headers: dict[str, str], deadline: float,
              read_timeout: float, limit: str = READ_LIMIT, body: bytes | dict[str, Any] | None = None,
              abort: UpstreamAbort | None = None, note: HeaderNote | None = None,
              dialect: str | None = None) -> tuple[Any, urllib3.BaseHTTPResponse]:
        wire = WIRE_FORMATS[dialect or target.provider.type]  # a relay's dialect names its API
        if body is None:
            body = self.body(target, req)
        all_headers = wire.headers(target.provider, self.settings.anthropic_version)
        url = wire.url(target.provider)
        if target.provider.platform == "azure":
            url = azure.url(target, self.settings.azure_api_version)
            azure.authorize(target.provider, all_headers)
        all_headers.update(headers)
        if req.stream:
            all_headers["accept"] = "text/event-stream"
        body_bytes = body if isinstance(body, bytes) else orjson.dumps(body)
        cloud = adapter_for(target.provider)
        # A cloud that refuses its access token (401: revoked, or expired early) is asked once more with a
        # fresh one, inside this attempt: a rotated credential must not fail a caller's request.
        for renewed in (False, True):
            url_now, payload = url, body_bytes
            if cloud is not None:  # the cloud's URL, body and auth (signed over the final headers)
                url_now, payload = cloud.prepare(target, body_bytes, all_headers, req.stream)
            resp = self.http.post(target.provider.name, url_now, all_headers,
                                  payload, read_timeout=read_timeout, deadline=deadline, limit=limit, abort=abort)
            if note is not None:
                note(resp.headers)
            if resp.status < 300:
                return wire, resp
            raw = self.http.read_all(target.provider.name, resp, read_timeout=read_timeout,
                                     deadline=deadline, limit=1024 * 1024)
            err = None if cloud is None else cloud.status_error(target, resp.status, resp.headers, raw)
            if err is not None and resp.status == 401 and cloud is not None and cloud.renews_token and not renewed:
                continue  # status_error has dropped the refused token
            if err is None:
                err = self._status_error(target, resp, wire.codec.error_message(resp.status, raw))
                if azure.filtered_prompt(resp.status, raw):
                    err.code = azure.CONTENT_FILTER  # OpenAI callers can tell a filtered prompt from other 400s
            raise without_key(err, target)
        raise AssertionError("unreachable: the second pass returns or raises")

    def complete(self, target: Target, req: ChatRequest, headers: dict[str, str],
                 deadline: float, body: bytes | dict[str, Any] | None = None,
                 abort: UpstreamAbort | None = None, note: HeaderNote | None = None) -> ChatResponse:
        """One non-streamed attempt (``body``: built beforehand by ``body()`` or ``payload()``, else here).

        ``abort`` (any attempt): cuts the connection from another thread, until the answer is in.
        ``note``: sees the provider's response headers as soon as they are in.
        """
        return self.complete_raw(target, req, headers, deadline, body, abort, note)[0]

    def complete_raw(self, target: Target, req: ChatRequest, headers: dict[str, str], deadline: float,
                     body: bytes | dict[str, Any] | None = None, abort: UpstreamAbort | None = None,
                     note: HeaderNote | None = None, dialect: str | None = None) -> tuple[ChatResponse, bytes]:
        """One non-streamed attempt: the answer read by the codec, and the provider's bytes as they came
        (``dialect``: the relayed API, when not the target's own wire format)."""
        read_timeout = self.settings.upstream_read_timeout
        wire, resp = self._send(target, req, headers, deadline, read_timeout, body=body, abort=abort, note=note,
                                dialect=dialect)
        raw = self.http.read_all(target.provider.name, resp, read_timeout=read_timeout, deadline=deadline)
        return self._read_answer(target, wire, raw), raw

    def _read_answer(self, target: Target, wire: Any, raw: bytes) -> ChatResponse:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _bad_response(f"Provider {target.provider.name} answered a body that is not JSON") from None
        if not isinstance(body, dict):
            raise _bad_response(f"Provider {target.provider.name} answered an unreadable body")
        try:
            return wire.codec.parse_response(body)
        except GatewayError as err:
            raise without_key(err, target) from None

    def stream(self, target: Target, req: ChatRequest, headers: dict[str, str],
               deadline: float, body: bytes | dict[str, Any] | None = None,
               abort: UpstreamAbort | None = None, note: HeaderNote | None = None,
               relay_dialect: str | None = None) -> EventStream:
        """One streamed attempt; returns once the provider's response headers are in.

        ``relay_dialect``: the events come as ``RelayedEvent``s (the provider's bytes, observed) instead
        of canonical events.
        """
        s = self.settings
        first = min(s.stream_first_byte_timeout, s.upstream_read_timeout)
        first_byte_by = time.monotonic() + first  # headers and first chunk share it
        wire, resp = self._send(target, req, headers, deadline, first, limit=FIRST_BYTE_LIMIT, body=body,
                                abort=abort, note=note, dialect=relay_dialect)
        chunks = self.http.iter_body(target.provider.name, resp, first_byte_by=first_byte_by,
                                     idle_timeout=s.stream_idle_timeout, deadline=deadline)
        cloud = adapter_for(target.provider)
        if cloud is not None:
            chunks = _closing(cloud.stream_chunks(target, chunks), chunks)
        return EventStream(target, resp, chunks, wire.codec.StreamDecoder(), relay_dialect)

    @staticmethod
    def _status_error(target: Target, resp: urllib3.BaseHTTPResponse, message: str) -> GatewayError:
        name = target.provider.name
        status = resp.status
        if status in (401, 403):
            return UpstreamError(
                f"Provider {name} rejected the gateway's credentials (HTTP {status}); "
                f"check {target.provider.key_env or 'its API key'}", code="upstream_auth_failed")
        if status in _PASS_BACK:
            return UpstreamRejected(f"Provider {name}: {message}", status=status, retry_after=_retry_after(resp))
        return UpstreamError(f"Provider {name} failed with HTTP {status}: {message}", upstream_status=status,
                             retry_after=_retry_after(resp))


def _closing(outer: Iterator[bytes], inner: Iterator[bytes]) -> Iterator[bytes]:
    """``outer``'s chunks (made from ``inner``'s); closing it mid-way closes ``inner`` too: the connection."""
    try:
        yield from outer
    finally:
        close = getattr(inner, "close", None)
        if close is not None:
            close()


def _bad_response(message: str) -> UpstreamError:
    return UpstreamError(message, failure=BAD_RESPONSE)


def deadline_from(timeout: float) -> float:
    return time.monotonic() + timeout

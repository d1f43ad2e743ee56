"""Bedrock's streamed answer (AWS event-stream binary framing) as the Anthropic SSE bytes it carries.

``InvokeModelWithResponseStream`` answers ``application/vnd.amazon.eventstream``: binary messages, each
a prelude (lengths, CRC), typed headers, a payload and a CRC. botocore's ``EventStreamBuffer`` parses and
checks them. A ``chunk`` event's payload is ``{"bytes": "<base64>"}`` whose bytes are one Anthropic
stream event (``message_start``, ``content_block_delta``...), exactly as Anthropic's own API would send
it in its SSE body; an ``exception`` message (``throttlingException``, ``modelStreamErrorException``...)
ends the stream. Turning both into Anthropic SSE here lets everything downstream (the relay, the codec's
stream decoder) treat a Bedrock stream as an Anthropic one: a Bedrock exception becomes an Anthropic
``error`` event with the error type Anthropic uses for the same trouble.

References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html
(the ``ResponseStream`` members and their statuses), https://docs.aws.amazon.com/AWSJavaScriptSDK/v3/latest/
Package/-smithy-eventstream-codec/ (the framing).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from app.errors import BAD_RESPONSE, UpstreamError
from app.formats.common import provider_error_message

# Bedrock's stream exceptions, and the Anthropic error type its own API uses for the same trouble.
EXCEPTION_TYPES: dict[str, str] = {
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "overloaded_error",
    "modelNotReadyException": "overloaded_error",
    "internalServerException": "api_error",
    "modelStreamErrorException": "api_error",
    "modelTimeoutException": "api_error",
    "validationException": "invalid_request_error",
}


def anthropic_sse(chunks: Iterable[bytes], provider: str) -> Iterator[bytes]:
    """The Anthropic SSE bytes carried by Bedrock's event-stream body, as its messages complete.

    A frame that fails its checks (CRC, lengths) or a chunk that is not base64 JSON is the provider's
    bad answer (``UpstreamError``, bad-response); bytes left over at the end (a cut stream) are dropped,
    and the Anthropic decoder then sees a stream without its ``message_stop``.
    """
    buffer = EventStreamBuffer()
    for chunk in chunks:
        buffer.add_data(chunk)
        out = bytearray()
        try:
            for message in buffer:
                out += _sse_event(message.headers, message.payload, provider)
        except ParserError as exc:
            raise UpstreamError(f"Provider {provider} sent a broken event-stream frame ({type(exc).__name__})",
                                failure=BAD_RESPONSE) from None
        if out:
            yield bytes(out)


def _sse_event(headers: dict[str, object], payload: bytes, provider: str) -> bytes:
    kind = headers.get(":message-type")
    if kind == "event":
        if headers.get(":event-type") != "chunk":
            return b""  # no other event type is defined; one added later is not ours to read
        return _chunk(payload, provider)
    if kind == "exception":
        name = str(headers.get(":exception-type") or "exception")
        message = provider_error_message(200, payload)  # the stream came with 200
        return error_event(EXCEPTION_TYPES.get(name, "api_error"), f"Bedrock {name}: {message}")
    if kind == "error":  # the framing's own error message: its code and text are headers
        code = str(headers.get(":error-code") or "error")
        return error_event("api_error", f"Bedrock {code}: {headers.get(':error-message') or ''}".rstrip(": "))
    raise UpstreamError(f"Provider {provider} sent an event-stream message of unknown type {kind!r}",
                        failure=BAD_RESPONSE)


def _chunk(payload: bytes, provider: str) -> bytes:
    try:
        part = orjson.loads(payload)
        event = base64.b64decode(part["bytes"], validate=True)
        parsed = orjson.loads(event)
        kind = parsed["type"]
    except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError, ValueError):
        raise UpstreamError(f"Provider {provider} sent a stream chunk that is not a base64 Anthropic event",
                            failure=BAD_RESPONSE) from None
    if not isinstance(kind, str) or "\n" in kind or "\r" in kind:
        raise UpstreamError(f"Provider {provider} sent a stream event without a type", failure=BAD_RESPONSE)
    data = event.strip()
    if b"\n" in data or b"\r" in data:  # pretty-printed JSON would break the SSE data line: one line it is
        data = orjson.dumps(parsed)
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def error_event(error_type: str, message: str) -> bytes:
    """An Anthropic ``error`` event, as Anthropic's API writes one mid-stream."""
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + body + b"\n\n"

"""OpenAI's Embeddings API, as far as the gateway reads it: the request's checks, the answer's usage.

Reference: https://platform.openai.com/docs/api-reference/embeddings/create (and the object it
returns, https://platform.openai.com/docs/api-reference/embeddings/object).

The request is relayed as it came (``model`` rewritten only where an alias maps it), so the
gateway checks only what it needs and what no provider should be sent: ``model``; ``input``
present, of one of the four shapes the API takes (a string, an array of strings, an array of
token ids, an array of token arrays), never empty, at most ``MAX_INPUTS`` items in a batch;
``dimensions`` a whole number from 1; ``encoding_format`` ``float`` or ``base64``; ``user`` a
string. Anything else (a field the gateway does not know, an input longer than the model
takes) is the provider's to refuse, and its 400 comes back with its message.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.errors import BAD_RESPONSE, InvalidRequest, UpstreamError
from app.formats.canonical import Usage
from app.formats.common import INT32_MAX, as_int, as_model, invalid, required

MAX_INPUTS = 2048  # "any array must be 2048 dimensions or less" (a batch: strings or token arrays)
ENCODINGS = ("float", "base64")
DEFAULT_ENCODING = "float"  # what the API answers when encoding_format is absent


def check_request(body: dict[str, Any]) -> str:
    """The requested model; the 400 naming the field when the body is not an embeddings request."""
    model = as_model(body.get("model"))
    check_input(required(body, "input", "input"))
    if body.get("dimensions") is not None:
        as_int(body["dimensions"], "dimensions", minimum=1, maximum=INT32_MAX)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODINGS:
        raise InvalidRequest(f"Invalid value for 'encoding_format': expected one of 'float' or 'base64', got "
                             f"{_shown(fmt)}", param="encoding_format")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user", "a string", user)
    return model


def check_input(value: Any) -> None:
    """One of the API's four input shapes, none of it empty."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("Invalid value for 'input': it cannot be an empty string", param="input")
        return
    if not isinstance(value, list):
        raise invalid("input", "a string, an array of strings, an array of token ids or an array of token arrays",
                      value)
    if not value:
        raise InvalidRequest("Invalid value for 'input': it cannot be an empty array", param="input")
    first = value[0]
    if _is_token(first):  # one input given as token ids; its length is the model's to judge
        for i, token in enumerate(value):
            _token(token, f"input[{i}]")
        return
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"Invalid value for 'input': at most {MAX_INPUTS} inputs in one request, got "
                             f"{len(value)}", param="input")
    if isinstance(first, str):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise invalid(f"input[{i}]", "a string, as the other inputs are", item)
            if not item:
                raise InvalidRequest(f"Invalid value for 'input[{i}]': it cannot be an empty string",
                                     param=f"input[{i}]")
        return
    if isinstance(first, list):
        for i, item in enumerate(value):
            if not isinstance(item, list):
                raise invalid(f"input[{i}]", "an array of token ids, as the other inputs are", item)
            if not item:
                raise InvalidRequest(f"Invalid value for 'input[{i}]': it cannot be an empty array",
                                     param=f"input[{i}]")
            for j, token in enumerate(item):
                _token(token, f"input[{i}][{j}]")
        return
    raise invalid("input[0]", "a string, a token id or an array of token ids", first)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _token(value: Any, param: str) -> None:
    if not _is_token(value) or not 0 <= value <= INT32_MAX:
        raise invalid(param, f"a token id (an integer from 0 to {INT32_MAX})", value)


def _shown(value: Any) -> str:
    return repr(value)[:40]


def input_text(value: Any) -> str:
    """The inputs as text for the access line (``LOG_PROMPTS=true``): strings one per line, token arrays
    as their length (ids are not text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and _is_token(value[0]):
        return f"<{len(value)} tokens>"
    if isinstance(value, list):
        return "\n".join(item if isinstance(item, str) else f"<{len(item)} tokens>" for item in value)
    return ""


def key_fields(body: dict[str, Any]) -> dict[str, Any]:
    """What decides the vectors, for the cache key: the body, ``encoding_format`` spelled out (absent is
    ``float``). ``model`` (the target stands for it) and ``user`` are left out by the key itself."""
    fmt = body.get("encoding_format")
    return body if fmt is not None else {**body, "encoding_format": DEFAULT_ENCODING}


def read_usage(raw: bytes, provider: str) -> Usage:
    """The tokens an embeddings answer counted (``usage.prompt_tokens``); 502 when it is not an answer.

    An answer of many float vectors is megabytes of JSON (100 inputs of 1536 floats: 3 MB, ~20 ms to
    parse), and ``usage`` is its last field in OpenAI's answers: when the answer names ``data`` in its
    first bytes and its tail from ``"usage"`` on parses as the rest of an object, only that tail is
    read. Anything else is parsed whole. A server that reports no usage is counted as 0 tokens (its
    cost is unknown, never guessed).
    """
    answer = _tail(raw) if raw.find(b'"data"', 0, _HEAD_BYTES) >= 0 else None
    if answer is None:
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise UpstreamError(f"Provider {provider} answered embeddings without a data list",
                                failure=BAD_RESPONSE)
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not _is_token(tokens):
        return Usage()
    return Usage(input_tokens=tokens)


_HEAD_BYTES = 512  # where an answer's "data" key is found (after "object", "id", "model", "created")


def _tail(raw: bytes) -> dict[str, Any] | None:
    """The answer's fields from its last ``"usage"`` key on, as an object; None when that is not what it is."""
    at = raw.rfind(b'"usage"')
    if at < 0:
        return None
    try:
        tail = orjson.loads(b"{" + raw[at:])
    except orjson.JSONDecodeError:
        return None
    return tail if isinstance(tail, dict) and isinstance(tail.get("usage"), dict) else None

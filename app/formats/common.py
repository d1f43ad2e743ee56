"""What both codecs share: strict field readers, JSON, ids, stop-reason rules, safe error text.

The readers raise ``InvalidRequest`` naming the field's path, so ingress gets
400s that say exactly what is wrong; the upstream readers reuse them and turn
that into ``UpstreamError`` at their boundary (a provider's garbage is a 502).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from app.errors import InvalidRequest, UpstreamError
from app.formats.canonical import StopReason

_MISSING: Any = object()


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def invalid(param: str, expected: str, value: Any = _MISSING) -> InvalidRequest:
    """A 400 naming the field: ``Invalid value for 'x': expected ..., got ...``."""
    got = "" if value is _MISSING else f", got {_describe(value)}"
    return InvalidRequest(f"Invalid value for '{param}': expected {expected}{got}", param=param)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 40 else f"'{value[:40]}...'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if abs(value) < 1e30 else "a number too large to show"
    return json_type(value)


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'", param=param)


def required(obj: Mapping[str, Any], key: str, param: str) -> Any:
    """``obj[key]``; absent or null is a 400 naming ``param``."""
    value = obj.get(key)
    if value is None:
        raise missing(param)
    return value


def as_obj(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(param, "an object", value)
    return value


def as_list(value: Any, param: str, *, nonempty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(param, "an array", value)
    if nonempty and not value:
        raise invalid(param, "a non-empty array", value)
    return value


def as_str(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise invalid(param, "a string", value)
    if nonempty and not value:
        raise invalid(param, "a non-empty string", value)
    return value


def as_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(param, "a boolean", value)
    return value


# Integers a provider can take: 64-bit at most; token counts and the like are 32-bit (int32) in its SDKs.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def as_int(value: Any, param: str, *, minimum: int | None = None, maximum: int = INT64_MAX) -> int:
    """An integer within bounds; JSON's ``100.0`` counts, ``1e21`` or 2**70 is a 400 naming ``param``.

    Without the upper bound a huge integer travels on and fails at ``orjson.dumps`` (64-bit only).
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 100.0 is an integer in JSON's eyes
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(param, "an integer", value)
    if (minimum is not None and value < minimum) or value > maximum:
        low = "" if minimum is None else f"from {minimum} "
        raise invalid(param, f"an integer {low}to {maximum}" if low else f"an integer <= {maximum}", value)
    return value


def as_number(value: Any, param: str, *, low: float | None = None, high: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise invalid(param, "a finite number", value)
    if low is not None and value < low:
        raise invalid(param, f"a number >= {low:g}" if high is None else f"a number from {low:g} to {high:g}", value)
    if high is not None and value > high:
        raise invalid(param, f"a number <= {high:g}" if low is None else f"a number from {low:g} to {high:g}", value)
    return value


# Model names as providers spell them: printable ASCII without spaces (letters, digits, - . _ / : @ ...).
MODEL_NAME_MAX = 256
_MODEL_NAME = re.compile(rf"[\x21-\x7e]{{1,{MODEL_NAME_MAX}}}")


def as_model(value: Any) -> str:
    """The ``model`` field: 1-256 printable ASCII characters, no spaces or control characters.

    It is echoed in the ``x-llm-edge-model`` header, logs and messages, so a CR, NUL or a
    megabyte of name is a 400 here; the name itself is not repeated (it may be a pasted key).
    """
    model = as_str(required({"model": value}, "model", "model"), "model", nonempty=True)
    if not _MODEL_NAME.fullmatch(model):
        raise InvalidRequest(f"Invalid value for 'model': expected a model name of 1 to {MODEL_NAME_MAX} printable "
                             f"ASCII characters without spaces (got {len(model)} characters)", param="model")
    return model


# A run of 16+ letters and digits mixing both is how keys look, and no model name does.
_KEY_RUN = re.compile(r"[A-Za-z0-9]{16,}")


def shown_model(name: str, limit: int = 64) -> str:
    """A client-chosen model name fit for a log field or an error message: key-like parts masked, capped."""
    name = _KEYLIKE.sub("[redacted]", name)
    name = _KEY_RUN.sub(lambda m: "[redacted]" if _mixed(m.group()) else m.group(), name)
    return name[:limit]


def _mixed(run: str) -> bool:
    return any(c.isdigit() for c in run) and any(c.isalpha() for c in run)


def opt_str(obj: Mapping[str, Any], key: str, param: str) -> str | None:
    value = obj.get(key)
    return None if value is None else as_str(value, param)


def opt_bool(obj: Mapping[str, Any], key: str, param: str) -> bool | None:
    value = obj.get(key)
    return None if value is None else as_bool(value, param)


def opt_int(obj: Mapping[str, Any], key: str, param: str, *, minimum: int | None = None,
            maximum: int = INT64_MAX) -> int | None:
    value = obj.get(key)
    return None if value is None else as_int(value, param, minimum=minimum, maximum=maximum)


def opt_number(obj: Mapping[str, Any], key: str, param: str, *, low: float | None = None,
               high: float | None = None) -> float | None:
    value = obj.get(key)
    return None if value is None else as_number(value, param, low=low, high=high)


def opt_obj(obj: Mapping[str, Any], key: str, param: str) -> dict[str, Any] | None:
    value = obj.get(key)
    return None if value is None else as_obj(value, param)


def opt_list(obj: Mapping[str, Any], key: str, param: str) -> list[Any] | None:
    value = obj.get(key)
    return None if value is None else as_list(value, param)


def str_list(value: Any, param: str) -> tuple[str, ...]:
    return tuple(as_str(item, f"{param}[{i}]") for i, item in enumerate(as_list(value, param)))


# --- JSON ---------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON text (tool arguments travel as strings in OpenAI's format)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidRequest(f"Value cannot be encoded as JSON: {exc}") from None


def dump_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or the 400 that explains why not (the caller's body at ingress, and
    the one a cloud adapter rewrites)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", param="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object", param="body")
    return body


def loads_object(text: str) -> dict[str, Any] | None:
    """Tool arguments as an object; ``""`` means no arguments; ``None`` when not a JSON object."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def loads_event(data: str, what: str) -> dict[str, Any]:
    """One SSE data payload as a JSON object, or the 502 that says the provider sent garbage."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{what} sent a stream event that is not JSON: {safe_text(data, 120)}") from None
    if not isinstance(value, dict):
        raise UpstreamError(f"{what} sent a stream event that is not a JSON object")
    return value


def unreadable(what: str, err: InvalidRequest) -> UpstreamError:
    """A reader's 400 about a provider body, as the 502 it really is."""
    return UpstreamError(f"{what} answered an unreadable body: {err.message}")


# --- Ids and time -------------------------------------------------------------


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def now() -> int:
    return int(time.time())


# --- Stop reasons -------------------------------------------------------------


def final_stop_reason(said: StopReason | None, has_tool_calls: bool) -> StopReason:
    """The stop reason a caller must see, derived from what the answer holds.

    Tool calls present means ``tool_use`` whatever the provider said (some
    answer ``stop`` with tool calls), except ``max_tokens``: a call cut by the
    token limit must not be run. ``tool_use`` without any call is ``end_turn``.
    """
    if has_tool_calls:
        return "max_tokens" if said == "max_tokens" else "tool_use"
    if said is None or said == "tool_use":
        return "end_turn"
    return said


# --- Extras that cross formats ------------------------------------------------


def check_foreign_extras(extra: Mapping[str, Any], *, source: str, target: str,
                         no_op: Mapping[str, Callable[[Any], bool]],
                         skip: Iterable[str] = ()) -> None:
    """Refuse every parameter of ``source`` format the ``target`` format cannot express.

    ``no_op`` maps a parameter to a test of "this value changes nothing" (a
    penalty of 0, ``logprobs: false``): such values are dropped, so clients
    that always send defaults keep working. ``skip`` lists parameters that
    are represented elsewhere or do not affect the answer.
    """
    skipped = set(skip)
    for key, value in extra.items():
        if key in skipped or value is None:
            continue
        test = no_op.get(key)
        if test is not None and test(value):
            continue
        raise InvalidRequest(
            f"'{key}' ({source} parameter) is not supported when the model is served by {target}; "
            "remove it or choose another model",
            param=key,
        )


# --- Error text from providers ------------------------------------------------

_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|key)[-_][A-Za-z0-9_\-*.]{6,}", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def safe_text(text: str, limit: int = 500) -> str:
    """Provider text fit to show a caller: one line, key-like tokens masked, at most ``limit`` chars."""
    text = _KEYLIKE.sub("[redacted]", _SPACES.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def provider_error_message(status: int, body: bytes) -> str:
    """The human message in a provider's error body (OpenAI, Anthropic or common variants)."""
    try:
        text = _find_message(body)
        if text:
            return safe_text(text)
    except Exception:  # a bad error body must never raise past here
        pass
    return f"the provider answered HTTP {status} without a readable error message"


def _find_message(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raw = body[:2000].decode("utf-8", "ignore").strip()
        return None if not raw or raw.startswith("<") else raw  # HTML error pages say nothing useful
    if isinstance(data, list) and data:
        data = data[0]  # some proxies wrap the error in an array
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str) and msg.strip():
            return msg
        inner = err.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    if isinstance(err, str) and err.strip():
        return err
    for key in ("message", "detail", "error_message"):
        msg = data.get(key)
        if isinstance(msg, str) and msg.strip():
            return msg
    return None

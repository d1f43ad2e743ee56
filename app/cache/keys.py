"""The cache key: a stable hash of everything that can change an answer, and nothing else.

The key is computed from the *canonical* request, so the same question asked
through ``/v1/chat/completions`` or ``/v1/messages``, with its JSON keys in any
order, finds the same entry. It covers the resolved target (provider and
upstream model, so two aliases of one model share entries), the messages,
system prompt, tools, tool choice and every generation parameter including
the format-specific ``extra`` ones. It leaves out what only changes how the
answer is delivered or who asked: ``stream``, ``stream_options``, ``user``,
``metadata`` and request ids.

A relayed request (the caller's dialect is the target's wire format) is keyed
by its *body* instead (``relay_key``): every field counts, known or not, so two
requests that differ in a field the gateway does not read (``cache_control``, a
thinking block's signature, a beta option) never share an entry. Left out, as
above: ``model`` (the target stands for it), ``stream_options.include_usage``
(replays add or drop the usage chunk per caller), ``user`` and ``metadata``.
``stream`` stays in: the entry is the provider's JSON or its SSE bytes, replayed
as they are. The dialect is part of the hash, so a relayed entry is only ever
found by a request of its own dialect.

Every key is scoped: by client id, or by ``CACHE_NAMESPACE`` when an operator
chooses to share answers between clients. The scope is part of the hash and
also appears, cleaned, in the key so one tenant's entries can be found with
``SCAN``; the format version in the prefix retires every old entry at once
when the key or the stored layout changes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from app.formats.canonical import ChatRequest
from app.providers.routing import Target

KEY_PREFIX = "llm-edge:cache:v2:"

# ChatRequest fields that never change the answer (or, for ``model``, are replaced by the target).
_NOT_IN_KEY = frozenset({"model", "stream", "include_usage", "user", "metadata", "source_format", "dropped",
                         "dropped_for_anthropic"})
# ``extra`` fields that only repeat ``max_tokens`` under another name (OpenAI's newer spelling).
_MAX_TOKENS_ALIASES = ("max_completion_tokens",)
_REQUEST_FIELDS = tuple(name for name in ChatRequest.__dataclass_fields__ if name not in _NOT_IN_KEY)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_EXACT_FLOAT = 2.0**53


def cache_scope(client_id: str, namespace: str | None) -> str:
    """Whose entries a request may see: its client's, or the shared namespace's."""
    return f"ns:{namespace}" if namespace else f"client:{client_id}"


def _dataclass_fields(value: Any) -> dict[str, Any]:
    """A canonical dataclass as the dict of its fields; orjson's ``default`` on the fast path, and ``_plain``'s."""
    names = getattr(value, "__dataclass_fields__", None)
    if names is None:
        raise TypeError(f"cannot put a {type(value).__name__} into a cache key")
    return {name: getattr(value, name) for name in names}


def _plain(value: Any) -> Any:
    """Canonical data as JSON-ready values; ``1.0`` and ``1`` are the same number in JSON."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT_FLOAT else value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return {name: _plain(item) for name, item in _dataclass_fields(value).items()}


def request_fingerprint(req: ChatRequest) -> dict[str, Any]:
    """The parts of a request that decide its answer, as plain JSON data."""
    out = {name: _plain(getattr(req, name)) for name in _REQUEST_FIELDS}
    extra = out["extra"]
    for alias in _MAX_TOKENS_ALIASES:
        if alias in extra and extra[alias] == out["max_tokens"]:
            del extra[alias]
    return out


# orjson writes an integral float below 1e16 as "N.0"; where this matches, the normalizing path runs.
_INTEGRAL_FLOAT = re.compile(rb"\.0(?![0-9])")
_FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def key_payload(req: ChatRequest, target: Target, scope: str) -> bytes:
    """The bytes the key hashes: scope, target and ``request_fingerprint``, as sorted-key JSON.

    Most requests have no integral float (``1.0``) and no ``max_tokens`` alias, and for them the
    fingerprint is the request's own data: orjson serializes it directly (dataclasses through
    ``_dataclass_fields``), about four times faster than building ``request_fingerprint`` first.
    The others take the normalizing path; both give the same bytes where both apply
    (tests/unit/test_cache_keys.py checks it on generated requests).
    """
    fields = {name: getattr(req, name) for name in _REQUEST_FIELDS}
    if not any(alias in req.extra for alias in _MAX_TOKENS_ALIASES):
        try:
            fast = orjson.dumps([scope, target.provider.name, target.model, fields], default=_dataclass_fields,
                                option=_FAST_OPTIONS)
        except TypeError:
            fast = None  # e.g. a non-string dict key: the normalizing path decides
        if fast is not None and not _INTEGRAL_FLOAT.search(fast):
            return fast
    return normalized_payload(req, target, scope)


def normalized_payload(req: ChatRequest, target: Target, scope: str) -> bytes:
    payload = [scope, target.provider.name, target.model, request_fingerprint(req)]
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


# Top-level body fields that do not change a relayed answer (``model`` is replaced by the target).
_RELAY_NOT_IN_KEY = ("model", "user", "metadata", "stream_options")


def relay_payload(body: dict[str, Any], dialect: str, target: Target, scope: str) -> bytes:
    """The bytes a relayed request's key hashes: scope, target, dialect and the body as sorted-key JSON."""
    fields = {k: v for k, v in body.items() if k not in _RELAY_NOT_IN_KEY}
    options = body.get("stream_options")
    if isinstance(options, dict):
        rest = {k: v for k, v in options.items() if k != "include_usage"}
        if rest:
            fields["stream_options"] = rest
    payload = ["relay", dialect, scope, target.provider.name, target.model, fields]
    try:
        fast = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        fast = None
    if fast is not None and not _INTEGRAL_FLOAT.search(fast):
        return fast
    return orjson.dumps(_plain(payload), option=orjson.OPT_SORT_KEYS)


def relay_key(body: dict[str, Any], dialect: str, target: Target, scope: str) -> str:
    """``llm-edge:cache:v2:<scope>:<hash>`` for a relayed request (see the module's docstring)."""
    digest = hashlib.blake2b(relay_payload(body, dialect, target, scope), digest_size=20).hexdigest()
    return f"{KEY_PREFIX}{_UNSAFE.sub('_', scope)[:64]}:{digest}"


def cache_key(req: ChatRequest, target: Target, scope: str) -> str:
    """``llm-edge:cache:v2:<scope>:<hash>``; the hash covers scope, target and request."""
    digest = hashlib.blake2b(key_payload(req, target, scope), digest_size=20).hexdigest()
    return f"{KEY_PREFIX}{_UNSAFE.sub('_', scope)[:64]}:{digest}"

"""The caller's headers that go on to providers, and the one check their values pass.

``anthropic-beta`` and ``anthropic-version`` go to Anthropic-format targets (from
``POST /v1/messages``, ``POST /v1/chat/completions`` when a target speaks Anthropic's
format, and ``POST /v1/messages/count_tokens``); ``openai-organization`` /
``openai-project`` to OpenAI-format targets only when ``FORWARD_OPENAI_ORG_HEADERS``
allows. Never a key, never a hop-by-hop header.

Each value is 1 to 1024 printable ASCII characters (spaces included), as these headers
hold: anything else would be the provider's 400 in its own words after an attempt, or a
header the gateway would have to mangle, so it is the caller's 400 here, naming the header,
in the caller's error shape. An empty header says nothing and is not forwarded.
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import InvalidRequest

# (WSGI environ name, header name) per wire format.
ANTHROPIC_HEADERS = (("HTTP_ANTHROPIC_BETA", "anthropic-beta"), ("HTTP_ANTHROPIC_VERSION", "anthropic-version"))
OPENAI_ORG_HEADERS = (("HTTP_OPENAI_ORGANIZATION", "openai-organization"), ("HTTP_OPENAI_PROJECT", "openai-project"))

HEADER_VALUE_MAX = 1024
_HEADER_VALUE = re.compile(rf"[\x20-\x7e]{{1,{HEADER_VALUE_MAX}}}")


def checked(name: str, value: str) -> str:
    """``value`` when it is fit to forward; else the 400 naming the header."""
    if not _HEADER_VALUE.fullmatch(value):
        raise InvalidRequest(f"Header '{name}' must be 1 to {HEADER_VALUE_MAX} printable ASCII characters",
                             param=name)
    return value


def forwarded_headers(env: dict[str, Any], openai_org: bool) -> dict[str, dict[str, str]] | None:
    """The caller's headers each wire format gets (None: none), each value ``checked``."""
    if "HTTP_ANTHROPIC_BETA" not in env and "HTTP_ANTHROPIC_VERSION" not in env and not openai_org:
        return None  # most requests: nothing to look for
    out: dict[str, dict[str, str]] = {}
    for wire, names in (("anthropic", ANTHROPIC_HEADERS), ("openai", OPENAI_ORG_HEADERS if openai_org else ())):
        found = {name: checked(name, env[key]) for key, name in names if env.get(key)}
        if found:
            out[wire] = found
    return out or None


def anthropic_headers(env: dict[str, Any]) -> dict[str, str]:
    """The caller's checked ``anthropic-*`` headers (what count_tokens forwards)."""
    return (forwarded_headers(env, False) or {}).get("anthropic", {})

"""One attempt at Anthropic's ``POST /v1/messages/count_tokens`` on one Anthropic-format target.

The caller's body goes as it is given (the resource rewrites only ``model``);
the headers are the provider's own (its key, the gateway's
``anthropic-version``) plus the ones the resource forwards
(``anthropic-version``, ``anthropic-beta``, ``x-request-id``,
``traceparent``). The answer is returned as the provider's bytes once it is
known to hold a count; statuses become gateway errors exactly as for chat
(``UpstreamCaller._status_error``), with the provider's key masked.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from app.config.settings import Settings
from app.errors import BAD_RESPONSE, UpstreamError
from app.providers.http import UpstreamHTTP
from app.providers.routing import Target
from app.providers.upstream import UpstreamCaller, without_key
from app.providers.wire import WIRE_FORMATS

COUNT_TOKENS_PATH = "/count_tokens"  # under the Messages path: /v1/messages/count_tokens
ANSWER_LIMIT = 1024 * 1024  # an answer is a few bytes; an error body a few hundred


class TokenCountRelay:
    def __init__(self, http: UpstreamHTTP, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    def count(self, target: Target, body: bytes, headers: Mapping[str, str], deadline: float,
              query: str = "") -> bytes:
        """The provider's ``{"input_tokens": N}``, as it sent it; a gateway error when it sent none."""
        provider = target.provider
        wire = WIRE_FORMATS["anthropic"]
        sent = wire.headers(provider, self.settings.anthropic_version)
        sent.update(headers)
        read_timeout = self.settings.upstream_read_timeout
        resp = self.http.post(provider.name, wire.url(provider) + COUNT_TOKENS_PATH + query, sent, body,
                              read_timeout=read_timeout, deadline=deadline)
        raw = self.http.read_all(provider.name, resp, read_timeout=read_timeout, deadline=deadline,
                                 limit=ANSWER_LIMIT)
        if resp.status >= 300:
            err = UpstreamCaller._status_error(target, resp, wire.codec.error_message(resp.status, raw))
            raise without_key(err, target)
        if not _is_count(raw):
            raise UpstreamError(f"Provider {provider.name} answered count_tokens without an input_tokens count",
                                failure=BAD_RESPONSE)
        return raw


def _is_count(raw: bytes) -> bool:
    """A JSON object whose ``input_tokens`` is a whole number, 0 or more."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(answer, dict):
        return False
    tokens = answer.get("input_tokens")
    return isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0

"""One attempt at OpenAI's ``POST /embeddings`` on one OpenAI-format target.

The body goes as the resource gives it (the caller's bytes, ``model`` rewritten only where an alias
maps it); the headers are the provider's own (its key) plus the ones the resource adds
(``x-request-id``, ``traceparent``, the OpenAI organization headers when allowed). The answer is
returned as the provider's bytes with the usage read from them; statuses become gateway errors
exactly as for chat (``UpstreamCaller._status_error``), with every provider key masked.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.config.settings import Settings
from app.formats.canonical import Usage
from app.formats.embeddings import read_usage
from app.providers.http import UpstreamAbort, UpstreamHTTP
from app.providers.routing import Target
from app.providers.upstream import HeaderNote, UpstreamCaller, without_key
from app.providers.wire import WIRE_FORMATS

EMBEDDINGS_PATH = "/embeddings"  # under the OpenAI base URL, which holds /v1
ERROR_LIMIT = 1024 * 1024


class EmbeddingsRelay:
    def __init__(self, http: UpstreamHTTP, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    def create(self, target: Target, body: bytes, headers: Mapping[str, str], deadline: float,
               abort: UpstreamAbort | None = None, note: HeaderNote | None = None) -> tuple[bytes, Usage]:
        """The provider's answer as it sent it, and the tokens it counted; a gateway error otherwise."""
        provider = target.provider
        wire = WIRE_FORMATS["openai"]
        sent = wire.headers(provider, self.settings.anthropic_version)
        sent.update(headers)
        read_timeout = self.settings.upstream_read_timeout
        resp = self.http.post(provider.name, provider.base_url + EMBEDDINGS_PATH, sent, body,
                              read_timeout=read_timeout, deadline=deadline, abort=abort)
        if note is not None:
            note(resp.headers)
        if resp.status >= 300:
            raw = self.http.read_all(provider.name, resp, read_timeout=read_timeout, deadline=deadline,
                                     limit=ERROR_LIMIT)
            err = UpstreamCaller._status_error(target, resp, wire.codec.error_message(resp.status, raw))
            raise without_key(err, target)
        raw = self.http.read_all(provider.name, resp, read_timeout=read_timeout, deadline=deadline)
        return raw, read_usage(raw, provider.name)

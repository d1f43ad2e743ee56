"""``GET``/``DELETE /v1/responses/{id}`` and ``GET .../input_items`` relayed to the provider that holds the response.

Only for a response that provider created through this gateway for the same client (the resource checks
the ``ResponseStore`` record first). The answer comes back as the provider sent it, status and bytes;
a provider error is the provider's own body with its status (the provider's keys masked), as on chat.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.config.settings import Settings
from app.providers.http import UpstreamHTTP
from app.providers.routing import Provider, Target
from app.providers.upstream import deadline_from, redact
from app.providers.wire import WIRE_FORMATS

ANSWER_LIMIT = 64 * 1024 * 1024


class StoredResponseRelay:
    def __init__(self, http: UpstreamHTTP, settings: Settings) -> None:
        self.http = http
        self.settings = settings

    def call(self, provider: Provider, method: str, path: str, query: str,
             headers: Mapping[str, str]) -> tuple[int, bytes]:
        """``method`` ``<base_url>/responses<path>?<query>`` at ``provider``: its status and body."""
        wire = WIRE_FORMATS["responses"]
        sent = wire.headers(provider, self.settings.anthropic_version)
        sent.update(headers)
        read_timeout = self.settings.upstream_read_timeout
        deadline = deadline_from(self.settings.request_timeout)
        url = wire.url(provider) + path + (f"?{query}" if query else "")
        resp = self.http.post(provider.name, url, sent, None, read_timeout=read_timeout, deadline=deadline,
                              method=method)
        raw = self.http.read_all(provider.name, resp, read_timeout=read_timeout, deadline=deadline,
                                 limit=ANSWER_LIMIT)
        if resp.status >= 300:
            raw = redact(raw.decode("utf-8", "replace"), Target(provider, "")).encode()
        return resp.status, raw

"""Cloud platforms that serve a vendor's wire format under their own URL and auth (Bedrock, Vertex AI).

A provider whose ``platform`` is not ``direct`` gets an adapter here, one per provider and process,
made at its first request (after the fork: credentials, their locks and refresh state are the
worker's own). ``UpstreamCaller`` asks it for the URL, the rewritten body and the signed headers of
an attempt, lets it read the provider's error statuses, and (Bedrock) turns its stream body into the
wire format's SSE. Relay or translation is still decided by the wire format (``Provider.type``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import orjson

from app.errors import GatewayError, UpstreamError
from app.formats.common import json_object
from app.providers.routing import CLOUD_PLATFORMS, Provider, Target


class CloudAdapter(Protocol):
    renews_token: bool  # a 401 means the access token was refused: drop it and ask once more with a new one

    def prepare(self, target: Target, body: bytes, headers: dict[str, str], stream: bool) -> tuple[str, bytes]:
        """The attempt's URL and body; ``headers`` (the request's, all set) are made the platform's, auth too."""

    def status_error(self, target: Target, status: int, headers: Mapping[str, str],
                     raw: bytes) -> GatewayError | None:
        """The gateway error for the platform's own error answer (None: read it as the wire format's)."""

    def stream_chunks(self, target: Target, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The stream body as the wire format's SSE bytes."""

    def secrets(self) -> Iterable[str]:
        """The credentials in use now (a session token, an access token), for error redaction."""


_ADAPTERS: dict[tuple[str, str, tuple[tuple[str, str], ...]], CloudAdapter] = {}
_LOCK = threading.Lock()


def adapter_for(provider: Provider) -> CloudAdapter | None:
    """The provider's adapter (made once per process), or None for a provider reached directly or on
    Azure (an OpenAI-format URL and header: ``app.providers.azure``, no credentials to refresh)."""
    if provider.platform not in CLOUD_PLATFORMS:
        return None
    key = (provider.name, provider.base_url, tuple(sorted(provider.options.items())))
    found = _ADAPTERS.get(key)
    if found is None:
        with _LOCK:
            found = _ADAPTERS.get(key)
            if found is None:
                found = _ADAPTERS[key] = _factories()[provider.platform](provider)
    return found


def _factories() -> dict[str, Callable[[Provider], CloudAdapter]]:
    """Imported at a cloud provider's first request: botocore and google-auth cost nothing to the rest."""
    from app.providers.bedrock import BedrockAdapter
    from app.providers.vertex import VertexAdapter
    return {"bedrock": BedrockAdapter, "vertex": VertexAdapter}


def current_secrets() -> set[str]:
    """Every credential the adapters of this process hold now."""
    return {s for adapter in list(_ADAPTERS.values()) for s in adapter.secrets() if s}


def rewrite_body(body: bytes, version: str, *, drop: tuple[str, ...],
                 extra: Mapping[str, Any] | None = None) -> bytes:
    """A Messages body for a cloud: ``anthropic_version`` set, ``drop``'s fields gone, ``extra`` added.

    The body is the caller's (relayed) or the gateway's translation: a JSON object either way; one that
    is not is the caller's 400, the same one ingress gives (``json_object``).
    """
    data = json_object(body)
    out: dict[str, Any] = {"anthropic_version": version}
    out.update((k, v) for k, v in data.items() if k not in drop and k != "anthropic_version")
    if extra:
        out.update(extra)
    return orjson.dumps(out)


def credentials_error(provider: Provider, what: str) -> UpstreamError:
    """The gateway could not get credentials for a cloud provider: an auth failure, the next target may serve."""
    return UpstreamError(f"Provider {provider.name}: {what}", code="upstream_auth_failed")

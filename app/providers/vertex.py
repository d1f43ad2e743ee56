"""Claude on Google Vertex AI: ``:rawPredict`` and ``:streamRawPredict`` with an OAuth access token.

The URL names the project, the region and the model (``.../publishers/anthropic/models/{model}:rawPredict``);
the body is Anthropic's Messages body without ``model``, with ``anthropic_version: vertex-2023-10-16``
(``stream`` stays: ``:streamRawPredict`` reads it). Answers are Anthropic's: JSON, or its SSE stream.

Access tokens come from google-auth: the service-account key file named by ``credentials_file``,
else Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
workload identity, the metadata server). A token is refreshed when it is no longer fresh (google-auth
counts one as stale 3m45s before it expires), by one thread under a lock while the others wait; a
token Vertex refuses (401) is dropped and the request sent once more with a new one.

References: https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude,
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.publishers.models/rawPredict,
https://google-auth.readthedocs.io/en/latest/user-guide.html.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import google.auth
import google.auth.transport.requests
from google.auth.credentials import TokenState
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import service_account

from app.errors import GatewayError, UpstreamError
from app.formats.common import provider_error_message
from app.providers.platforms import credentials_error, rewrite_body
from app.providers.routing import Provider, Target

VERTEX_VERSION = "vertex-2023-10-16"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_TIMEOUT = 10.0  # seconds for a token request (google-auth's default is 120)


def public_endpoint(region: str) -> str:
    return "https://aiplatform.googleapis.com" if region == "global" else f"https://{region}-aiplatform.googleapis.com"


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport, with a bounded wait for the token endpoint."""

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        return super().__call__(url, method, body, headers, timeout=min(timeout or TOKEN_TIMEOUT, TOKEN_TIMEOUT),
                                **kwargs)


class VertexAdapter:
    """One Vertex AI provider (one project and region, one credential) in one worker process."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        project, region = provider.options["project"], provider.options["region"]
        base = provider.base_url or public_endpoint(region)
        self._prefix = (f"{base}/v1/projects/{quote(project, safe='')}/locations/{quote(region, safe='')}"
                        "/publishers/anthropic/models/")
        self._file = provider.options.get("credentials_file")
        self._credentials: Any = None
        self._lock = threading.Lock()
        self._request = _TokenRequest()

    def token(self) -> str:
        """A fresh access token: the one held, or a new one fetched by this thread while others wait."""
        creds = self._credentials
        if creds is not None and creds.token_state == TokenState.FRESH:
            token: str = creds.token
            return token
        with self._lock:
            if self._credentials is None:
                self._credentials = self._load()
            creds = self._credentials
            if creds.token_state != TokenState.FRESH:
                try:
                    creds.refresh(self._request)
                except (GoogleAuthError, OSError) as exc:
                    raise credentials_error(self.provider, f"fetching a Google access token failed "
                                                           f"({type(exc).__name__}: {exc})") from None
            return str(creds.token)

    def _load(self) -> Any:
        try:
            if self._file:
                creds = service_account.Credentials.from_service_account_file(self._file, scopes=SCOPES)
            else:
                creds, _ = google.auth.default(scopes=SCOPES)
        except (GoogleAuthError, OSError, ValueError) as exc:
            where = f"from {self._file}" if self._file else "(Application Default Credentials)"
            raise credentials_error(self.provider, f"cannot load Google credentials {where}: "
                                                   f"{type(exc).__name__}") from None
        return creds

    renews_token = True  # a revoked or early-expired token: the attempt is sent once more with a fresh one

    def forget_token(self) -> None:
        """Vertex refused the token: the next attempt fetches another."""
        with self._lock:
            if self._credentials is not None:
                self._credentials.token = None

    def url(self, model: str, stream: bool) -> str:
        return self._prefix + quote(model, safe="@") + (":streamRawPredict" if stream else ":rawPredict")

    def prepare(self, target: Target, body: bytes, headers: dict[str, str], stream: bool) -> tuple[str, bytes]:
        payload = rewrite_body(body, VERTEX_VERSION, drop=("model",))
        for key in [k for k in headers if k.lower() in ("x-api-key", "authorization")]:
            del headers[key]
        headers["authorization"] = f"Bearer {self.token()}"
        headers["content-type"] = "application/json"
        return self.url(target.model, stream), payload

    def status_error(self, target: Target, status: int, headers: Mapping[str, str],
                     raw: bytes) -> GatewayError | None:
        if status == 401:
            self.forget_token()
        if status in (401, 403):
            return UpstreamError(f"Provider {target.provider.name} rejected the gateway's Google credentials "
                                 f"(HTTP {status}): {provider_error_message(status, raw)}",
                                 code="upstream_auth_failed")
        return None

    def stream_chunks(self, target: Target, chunks: Iterator[bytes]) -> Iterator[bytes]:
        return chunks  # Anthropic's SSE already

    def secrets(self) -> Iterable[str]:
        creds = self._credentials
        token = getattr(creds, "token", None)
        return (token,) if token else ()

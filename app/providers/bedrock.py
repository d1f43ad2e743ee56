"""Claude on AWS Bedrock: ``InvokeModel`` and ``InvokeModelWithResponseStream``, signed with SigV4.

The body is Anthropic's Messages body without ``model`` (it is in the path) and ``stream`` (the path
says it), with ``anthropic_version: bedrock-2023-05-31``; ``anthropic-beta`` header values go into the
body's ``anthropic_beta`` list. The answer is Anthropic's Messages JSON; a stream is AWS event-stream
framing (``app.providers.eventstream`` makes it Anthropic SSE).

Credentials come from botocore's standard chain (environment, shared config and profile, web identity
for EKS/IRSA, container and instance metadata), resolved at the provider's first request;
``RefreshableCredentials`` refreshes temporary ones before they expire, under its own lock. Signing is
botocore's ``SigV4Auth``, never a hand-written signer.

References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import botocore.session
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError

from app.errors import TIMEOUT, GatewayError, UpstreamError, UpstreamRejected, UpstreamTimeout
from app.formats.common import provider_error_message
from app.providers import eventstream
from app.providers.platforms import credentials_error, rewrite_body
from app.providers.routing import Provider, Target

BEDROCK_VERSION = "bedrock-2023-05-31"
SIGNING_NAME = "bedrock"  # the service name in the SigV4 scope of bedrock-runtime
EVENT_STREAM = "application/vnd.amazon.eventstream"

_AUTH_EXCEPTIONS = frozenset({
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "IncompleteSignatureException", "ExpiredTokenException", "MissingAuthenticationTokenException",
})


def public_endpoint(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


class BedrockAdapter:
    """One Bedrock provider (one region, one credential chain) in one worker process."""

    renews_token = False  # SigV4 signs each request; a refused signature is not cured by asking again

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.region = provider.options["region"]
        self.base_url = provider.base_url or public_endpoint(self.region)
        self._profile = provider.options.get("profile")
        self._credentials: Any = None  # botocore Credentials (or RefreshableCredentials), at first use
        self._frozen: ReadOnlyCredentials | None = None
        self._lock = threading.Lock()

    def credentials(self) -> ReadOnlyCredentials:
        """The credentials to sign with now: resolved once, then refreshed by botocore before expiry."""
        creds = self._credentials
        if creds is None:
            with self._lock:
                if self._credentials is None:
                    self._credentials = self._resolve()
                creds = self._credentials
        try:
            frozen: ReadOnlyCredentials = creds.get_frozen_credentials()
        except BotoCoreError as exc:
            raise credentials_error(self.provider, f"refreshing its AWS credentials failed ({type(exc).__name__})") \
                from None
        self._frozen = frozen
        return frozen

    def _resolve(self) -> Any:
        try:
            found = botocore.session.Session(profile=self._profile).get_credentials()
        except BotoCoreError as exc:
            raise credentials_error(self.provider, f"cannot load AWS credentials ({type(exc).__name__}: {exc})") \
                from None
        if found is None:
            raise credentials_error(self.provider, "no AWS credentials found (environment, shared config or "
                                                   "profile, web identity, container or instance metadata)")
        return found

    def url(self, model: str, stream: bool) -> str:
        action = "invoke-with-response-stream" if stream else "invoke"
        return f"{self.base_url}/model/{quote(model, safe='')}/{action}"  # an ARN's ':' and '/' too

    def prepare(self, target: Target, body: bytes, headers: dict[str, str], stream: bool) -> tuple[str, bytes]:
        betas = _pop(headers, "anthropic-beta")
        _pop(headers, "anthropic-version")  # the version is the body's
        _pop(headers, "x-api-key")
        extra = None
        if betas:
            extra = {"anthropic_beta": [b.strip() for b in betas.split(",") if b.strip()]}
        payload = rewrite_body(body, BEDROCK_VERSION, drop=("model", "stream"), extra=extra)
        url = self.url(target.model, stream)
        headers["content-type"] = "application/json"
        if stream:
            _pop(headers, "accept")
            headers["accept"] = EVENT_STREAM
            headers["x-amzn-bedrock-accept"] = "application/json"  # the model's answer inside each chunk
        else:
            headers["accept"] = "application/json"
        self.sign(url, payload, headers)
        return url, payload

    def sign(self, url: str, payload: bytes, headers: dict[str, str]) -> None:
        """``headers`` plus ``Authorization``, ``X-Amz-Date`` (and ``X-Amz-Security-Token``), signed over all."""
        request = AWSRequest(method="POST", url=url, data=payload, headers=headers)
        SigV4Auth(self.credentials(), SIGNING_NAME, self.region).add_auth(request)
        headers.clear()
        headers.update(request.headers.items())

    def status_error(self, target: Target, status: int, headers: Mapping[str, str],
                     raw: bytes) -> GatewayError | None:
        """Bedrock's exceptions as the errors Anthropic's own API would give for the same trouble."""
        kind = error_type(headers, raw)
        name = target.provider.name
        message = provider_error_message(status, raw)
        if kind in _AUTH_EXCEPTIONS or status in (401, 403):
            return UpstreamError(f"Provider {name} rejected the gateway's AWS credentials or their permissions "
                                 f"(HTTP {status} {kind or ''}): {message}".replace(" )", ")"),
                                 code="upstream_auth_failed")
        said = f"Provider {name}: Bedrock {kind or f'HTTP {status}'}: {message}"
        if kind in ("ThrottlingException", "ServiceQuotaExceededException"):
            return UpstreamRejected(said, status=429)  # Anthropic's rate_limit_error
        if kind == "ModelNotReadyException":
            return UpstreamError(said, upstream_status=529)  # Anthropic's overloaded_error: retried, falls back
        if kind == "ModelTimeoutException":
            return UpstreamTimeout(said, failure=TIMEOUT)
        if kind == "ModelErrorException":
            return UpstreamError(said, upstream_status=500)  # the model failed: Anthropic's api_error
        return None

    def stream_chunks(self, target: Target, chunks: Iterator[bytes]) -> Iterator[bytes]:
        return eventstream.anthropic_sse(chunks, target.provider.name)

    def secrets(self) -> Iterable[str]:
        frozen = self._frozen
        return () if frozen is None else tuple(s for s in (frozen.secret_key, frozen.token) if s)


def error_type(headers: Mapping[str, str], raw: bytes) -> str | None:
    """The exception name: ``x-amzn-ErrorType`` (``ThrottlingException:http://...``), else the body's ``__type``."""
    value = headers.get("x-amzn-errortype") or headers.get("x-amzn-ErrorType")
    if not value:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        value = data.get("__type") if isinstance(data, dict) else None
        if not isinstance(value, str):
            return None
        value = value.rsplit("#", 1)[-1]
    return value.split(":", 1)[0].strip() or None


def _pop(headers: dict[str, str], name: str) -> str | None:
    """Remove a header whatever its case; its value."""
    found = None
    for key in [k for k in headers if k.lower() == name]:
        found = headers.pop(key)
    return found

"""Claude on Google Vertex AI (``:rawPredict`` / ``:streamRawPredict``) and Google's OAuth token endpoint.

Token endpoint (``POST /token``): the JWT-bearer grant a service-account credential makes
(``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, ``assertion`` an RS256 JWT). The fake checks
what Google checks: the signature, with the public key of the account the JWT names (``iss``, key id
``kid``); ``aud`` is Google's token endpoint; ``iat``/``exp`` are current; a ``scope`` is asked. It answers an
access token that lives ``token_lifetime`` seconds.

rawPredict: ``Authorization: Bearer`` must be a token this fake issued and that has not expired (else
Google's 401 ``UNAUTHENTICATED``); the body must carry ``anthropic_version: vertex-2023-10-16`` and no
``model`` (the URL names it), ``:streamRawPredict`` wants ``stream: true``; the rest is validated as the
Anthropic Messages API does, and answered as it answers (JSON, or its SSE events).

References: https://developers.google.com/identity/protocols/oauth2/service-account#httprest,
https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import anthropic
from .wire import ApiError, dumps, loads

TOKEN_PATH = "/token"
PREDICT_PREFIX = "/v1/projects/"
VERSION = "vertex-2023-10-16"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what Google wants in ``aud``, whatever token_uri was called
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class GoogleAccounts:
    """Service accounts the fake knows (email -> key id -> public key) and the access tokens it issued."""

    token_lifetime: int = 3600
    accounts: dict[str, dict[str, rsa.RSAPublicKey]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch seconds)
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, email: str, key_id: str, public_key_pem: bytes) -> None:
        key = serialization.load_pem_public_key(public_key_pem)
        assert isinstance(key, rsa.RSAPublicKey)
        self.accounts.setdefault(email, {})[key_id] = key

    def expire_tokens(self) -> None:
        """Every issued token stops working (as if its hour were up)."""
        with self.lock:
            self.tokens.clear()

    def valid(self, token: str | None) -> bool:
        with self.lock:
            return token is not None and self.tokens.get(token, 0) > time.time()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _oauth_error(error: str, description: str) -> ApiError:
    return ApiError(description, 400, error, None, "oauth")


def issue_token(accounts: GoogleAccounts, raw: bytes) -> dict[str, Any]:
    """The token endpoint: a verified JWT-bearer assertion gets an access token."""
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != GRANT:
        raise _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}")
    parts = form.get("assertion", "").split(".")
    if len(parts) != 3:
        raise _oauth_error("invalid_request", "Invalid JWT: assertion is not a JWT")
    try:
        header, claims = loads(_b64(parts[0])), loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except (ValueError, TypeError):
        raise _oauth_error("invalid_grant", "Invalid JWT: cannot be decoded") from None
    keys = accounts.accounts.get(str(claims.get("iss")))
    key = (keys or {}).get(str(header.get("kid")))
    if header.get("alg") != "RS256" or key is None:
        raise _oauth_error("invalid_grant", "Invalid grant: account not found")
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise _oauth_error("invalid_grant", "Invalid JWT Signature.") from None
    now = time.time()
    if claims.get("aud") != AUDIENCE:
        raise _oauth_error("invalid_grant", f"Invalid JWT: aud must be {AUDIENCE}")
    if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("iat"), int) \
            or claims["exp"] < now or claims["iat"] > now + 300 or claims["exp"] - claims["iat"] > 3600:
        raise _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in "
                           "a reasonable timeframe. Check your iat and exp values in the JWT claim.")
    if not claims.get("scope"):
        raise _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    token = "ya29.emulator-" + secrets.token_urlsafe(24)
    with accounts.lock:
        accounts.tokens[token] = now + accounts.token_lifetime
        accounts.issued += 1
    return {"access_token": token, "expires_in": accounts.token_lifetime, "token_type": "Bearer"}


def google_error(status: int, message: str) -> ApiError:
    return ApiError(message, status, STATUS_NAMES.get(status, "UNKNOWN"), None, "google")


def render(err: ApiError) -> bytes:
    if err.code == "oauth":
        return dumps({"error": err.etype, "error_description": err.message})
    if err.code == "anthropic":  # the model's own refusal comes back in Anthropic's shape
        return dumps(anthropic.error_body(err.status, err.message, "invalid_request_error"))
    return dumps({"error": {"code": err.status, "message": err.message, "status": err.etype}})


def predict(accounts: GoogleAccounts, path: str, headers: dict[str, str], raw: bytes) -> tuple[Any, bool]:
    """Check a rawPredict call; the Messages body (the path's model put back) and whether it streams."""
    rest = path[len(PREDICT_PREFIX):]
    parts = rest.split("/")
    if len(parts) != 7 or parts[1] != "locations" or parts[3:5] != ["publishers", "anthropic"] \
            or parts[5] != "models" or ":" not in parts[6]:
        raise google_error(404, f"The requested URL {path} was not found on this server.")
    model, _, method = unquote(parts[6]).rpartition(":")
    if method not in ("rawPredict", "streamRawPredict"):
        raise google_error(404, f"Unknown method {method}")
    auth = headers.get("authorization", "")
    token = auth[7:] if auth[:7].lower() == "bearer " else None
    if not accounts.valid(token):
        raise google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                           "login cookie or other valid authentication credential.")
    try:
        body = loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise google_error(400, "Invalid JSON payload received.")
    if body.get("anthropic_version") != VERSION:
        raise ApiError(f"anthropic_version: expected '{VERSION}'", 400, None, None, "anthropic")
    if "model" in body:
        raise ApiError("model: Extra inputs are not permitted", 400, None, None, "anthropic")
    stream = body.get("stream") is True
    if method == "streamRawPredict" and not stream:
        raise google_error(400, "streamRawPredict needs \"stream\": true in the request body")
    messages_body = {k: v for k, v in body.items() if k != "anthropic_version"}
    messages_body["model"] = model
    try:
        anthropic.validate(messages_body)
    except ApiError as err:
        raise ApiError(err.message, err.status, None, None, "anthropic") from None
    return messages_body, stream

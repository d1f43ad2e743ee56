"""Azure OpenAI: the OpenAI wire format at Azure's URLs, with Azure's auth.

Two endpoints, chosen per provider by ``endpoint`` in ``config/models.yaml``:

- ``deployments`` (default): ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=V``;
  the target's model is the deployment name, ``V`` the provider's ``api_version`` or AZURE_OPENAI_API_VERSION.
- ``v1``: ``{base_url}/openai/v1/chat/completions``, the deployment name in the body's ``model``, no
  ``api-version``.

Auth: the key in an ``api-key`` header, or a Microsoft Entra ID access token as ``Authorization: Bearer``
read from ``token_file``. The file is re-read when it changes (looked at once a second at most), so whatever
refreshes it (a sidecar, ``az account get-access-token`` on a timer, a workload-identity agent) needs no
restart. The ``azure-identity`` package is not used: it would bring MSAL and its own HTTP stack into every
worker for one header, and a token written to a file by the platform's own tooling serves the same end.

Content filtering needs no code here: ``finish_reason: content_filter`` already reads as the canonical
``refusal`` (Anthropic's ``stop_reason: refusal``), the ``content_filter_results`` / ``prompt_filter_results``
fields pass through a relay untouched, and a prompt refused with ``400 code: content_filter`` keeps that
code (``filtered_prompt``) so OpenAI callers can tell it from other 400s.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from app.config.settings import ConfigError
from app.errors import UpstreamError

if TYPE_CHECKING:
    from app.providers.routing import Provider, Target

ENDPOINTS = ("deployments", "v1")
CONTENT_FILTER = "content_filter"  # the error code of a prompt Azure's filter refused
TOKEN_RECHECK = 1.0  # seconds between two looks at a token file (a token is refreshed minutes before it expires)


def options_from(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An Azure provider's own settings from its ``config/models.yaml`` entry (checked here, at start)."""
    endpoint = spec.get("endpoint", "deployments")
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"{where}.endpoint must be deployments or v1, got {endpoint!r}")
    options: dict[str, Any] = {"endpoint": endpoint}
    version = spec.get("api_version")
    if version is not None:
        if not isinstance(version, str) or not version.strip():
            raise ConfigError(f"{where}.api_version must be a version string such as 2024-10-21")
        options["api_version"] = version.strip()
    token_file = spec.get("token_file")
    if token_file is not None:
        if not isinstance(token_file, str) or not token_file:
            raise ConfigError(f"{where}.token_file must be a file path")
        if spec.get("api_key_env"):
            raise ConfigError(f"{where}: give either api_key_env or token_file, not both")
        options["token_file"] = token_file
    return options


def url(target: Target, default_api_version: str) -> str:
    """The chat completions URL of ``target`` (its model is the Azure deployment name)."""
    provider = target.provider
    if provider.options.get("endpoint") == "v1":
        return f"{provider.base_url}/openai/v1/chat/completions"
    version = provider.options.get("api_version") or default_api_version
    return (f"{provider.base_url}/openai/deployments/{quote(target.model, safe='')}/chat/completions"
            f"?api-version={quote(version, safe='')}")


def authorize(provider: Provider, headers: dict[str, str]) -> None:
    """Azure's auth in place of OpenAI's bearer key: ``api-key``, or the Entra ID token of ``token_file``."""
    headers.pop("authorization", None)
    token_file = provider.options.get("token_file")
    if token_file:
        headers["authorization"] = f"Bearer {TOKENS.read(token_file)}"
    elif provider.api_key:
        headers["api-key"] = provider.api_key


def filtered_prompt(status: int, raw: bytes) -> bool:
    """Whether an error answer is Azure's content filter refusing the prompt (400, ``code: content_filter``)."""
    if status != 400 or CONTENT_FILTER.encode() not in raw:
        return False
    try:
        error = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == CONTENT_FILTER


class TokenFiles:
    """Bearer tokens read from files, re-read when a file's modification time or size changes.

    A file is looked at (``stat``) at most every ``recheck`` seconds; a token read is registered as a key
    (``register_keys``), so no error or log ever carries it.
    """

    def __init__(self, recheck: float = TOKEN_RECHECK, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[tuple[int, int], str, float]] = {}

    def read(self, path: str) -> str:
        known = self._tokens.get(path)
        now = self._clock()
        if known is not None and now < known[2]:
            return known[1]
        try:
            st = os.stat(path)
        except OSError as exc:
            raise UpstreamError(f"Azure token file {path!r} cannot be read: {exc.strerror}",
                                code="upstream_auth_failed") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if known is not None and known[0] == stamp:
            with self._lock:
                self._tokens[path] = (stamp, known[1], now + self.recheck)
            return known[1]
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise UpstreamError(f"Azure token file {path!r} cannot be read: {exc.strerror}",
                                code="upstream_auth_failed") from None
        if not token:
            raise UpstreamError(f"Azure token file {path!r} is empty", code="upstream_auth_failed")
        from app.providers.upstream import register_keys

        register_keys([token])
        with self._lock:
            self._tokens[path] = (stamp, token, now + self.recheck)
        return token


TOKENS = TokenFiles()

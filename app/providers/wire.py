"""What differs between the two provider wire formats: path, auth headers, codec.

Extra providers declared in ``config/models.yaml`` reuse one of these by
their ``type``; only the base URL and key differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.formats import responses as responses_codec
from app.providers.routing import Provider


@dataclass(frozen=True, slots=True)
class WireFormat:
    name: str
    codec: ModuleType
    path: str

    def url(self, provider: Provider) -> str:
        return provider.base_url + self.path

    def headers(self, provider: Provider, anthropic_version: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.name == "anthropic":
            headers["anthropic-version"] = anthropic_version
            if provider.api_key:
                headers["x-api-key"] = provider.api_key
        elif provider.api_key:
            headers["authorization"] = f"Bearer {provider.api_key}"
        return headers


WIRE_FORMATS: dict[str, WireFormat] = {
    # The OpenAI base URL includes /v1 (as in the OpenAI SDK); Anthropic's does not.
    "openai": WireFormat("openai", openai_codec, "/chat/completions"),
    "anthropic": WireFormat("anthropic", anthropic_codec, "/v1/messages"),
    # Not a provider type: OpenAI's Responses API, relayed to openai-type providers with ``responses: true``.
    "responses": WireFormat("openai", responses_codec, "/responses"),
}

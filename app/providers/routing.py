"""Which provider and upstream model serve a requested model name.

Built once from ``config/models.yaml`` and the settings; read-only afterwards,
so every thread shares it. Resolution order (INTERFACE.md): an entry in the
file, then ``provider/model``, then the name prefixes; anything else is 404.

Because nothing changes after construction, each model name's targets are
worked out once and remembered (every request resolves its model; apps ask
for the same few names), up to ``MAX_REMEMBERED_MODELS``: the names are the
callers' text, so past that many the rest are resolved each time. Names that
fail are never remembered: the error is raised afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from app.config.settings import ConfigError, Settings, read_secret
from app.errors import ModelNotFound, NoHealthyProvider
from app.formats.common import shown_model

WireFormat = Literal["openai", "anthropic"]

MAX_REMEMBERED_MODELS = 1024

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
    ("chatgpt-", "openai"), ("text-embedding-", "openai"), ("claude-", "anthropic"),
)


# Clouds that serve a vendor's wire format under their own URL and auth (``type`` in config/models.yaml):
# the wire format they speak, the options a provider of theirs must name, and those it may.
CLOUD_PLATFORMS: dict[str, tuple[WireFormat, tuple[str, ...], tuple[str, ...]]] = {
    "bedrock": ("anthropic", ("region",), ("profile",)),
    "vertex": ("anthropic", ("project", "region"), ("credentials_file",)),
}


@dataclass(frozen=True, slots=True)
class Provider:
    """An upstream endpoint: its wire format, base URL and the gateway's own key.

    ``type`` is the wire format (relay or translation is decided by it); ``platform`` says who serves it:
    ``direct`` (the vendor's API or a compatible server), or a cloud (``CLOUD_PLATFORMS``) whose URL and
    auth ``app.providers.platforms`` supply from ``options`` (region, project...).
    """

    name: str
    type: WireFormat
    base_url: str
    api_key: str | None
    key_env: str | None  # the variable that holds the key, for messages
    key_required: bool
    responses: bool = False  # serves OpenAI's Responses API (POST /responses): those requests are relayed
    platform: str = "direct"
    options: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def available(self) -> bool:
        return bool(self.api_key) or not self.key_required

    def speaks(self, dialect: str) -> bool:
        """Whether a caller's body in ``dialect`` is relayed to this provider as it came."""
        return dialect == self.type or (dialect == "responses" and self.responses)


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request can go: provider plus the model name it knows."""

    provider: Provider
    model: str


@dataclass(frozen=True, slots=True)
class ModelEntry:
    provider: str
    model: str | None
    fallbacks: tuple[str, ...]


def load_yaml(path: str, setting: str) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file is an empty mapping."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{setting}: cannot read {path!r}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{setting}: {path!r} must hold a mapping at the top")
    return data


def _cloud_provider(name: str, platform: str, spec: dict[str, Any], where: str) -> Provider:
    """A provider on a cloud platform: its options checked here; credentials come from the cloud's own
    chain when the first request needs them (``app.providers.platforms``), never from this file."""
    wire, required, optional = CLOUD_PLATFORMS[platform]
    unknown = sorted(set(spec) - {"type", "base_url", *required, *optional})
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)} not known for type {platform} "
                          f"(it takes base_url, {', '.join((*required, *optional))})")
    options: dict[str, str] = {}
    for key in (*required, *optional):
        value = spec.get(key)
        if value is None:
            if key in required:
                raise ConfigError(f"{where}.{key} is required for type {platform}")
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key} must be a non-empty string")
        options[key] = value.strip()
    base_url = spec.get("base_url", "")  # empty: the platform's public endpoint for the region
    if base_url and (not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    return Provider(name, wire, base_url.rstrip("/"), None, None, False, platform=platform, options=options)


class Router:
    """Resolves model names to an ordered list of targets (primary, then fallbacks)."""

    def __init__(self, providers: Mapping[str, Provider], models: Mapping[str, ModelEntry]) -> None:
        self.providers = dict(providers)
        self.models = dict(models)
        self._resolved: dict[str, tuple[Target, ...]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str]) -> Router:
        data = load_yaml(settings.models_file, "MODELS_FILE")
        providers = {
            "openai": Provider("openai", "openai", settings.openai_base_url, settings.openai_api_key,
                               "OPENAI_API_KEY", True, responses=True),
            "anthropic": Provider("anthropic", "anthropic", settings.anthropic_base_url,
                                  settings.anthropic_api_key, "ANTHROPIC_API_KEY", True),
        }
        for name, spec in (data.get("providers") or {}).items():
            where = f"MODELS_FILE: providers.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(f"{where} must be a mapping")
            ptype = spec.get("type", "openai")
            if ptype in CLOUD_PLATFORMS:
                providers[name] = _cloud_provider(name, ptype, spec, where)
                continue
            if ptype not in ("openai", "anthropic"):
                raise ConfigError(f"{where}.type must be openai, anthropic, {' or '.join(CLOUD_PLATFORMS)}, "
                                  f"got {ptype!r}")
            base_url = spec.get("base_url")
            if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.base_url must be an http(s) URL")
            key_env = spec.get("api_key_env")
            if key_env is not None and not isinstance(key_env, str):
                raise ConfigError(f"{where}.api_key_env must be a variable name")
            api_key = read_secret(environ, key_env) if key_env else None  # the *_FILE rule of every secret
            responses = spec.get("responses", False)
            if not isinstance(responses, bool) or (responses and ptype != "openai"):
                raise ConfigError(f"{where}.responses must be true or false, and true only for type openai")
            providers[name] = Provider(name, ptype, base_url.rstrip("/"), api_key or None, key_env,
                                       bool(spec.get("key_required", False)), responses)
        models: dict[str, ModelEntry] = {}
        for name, spec in (data.get("models") or {}).items():
            where = f"MODELS_FILE: models.{name}"
            spec = spec or {}
            if not isinstance(spec, dict):
                raise ConfigError(f"{where} must be a mapping")
            provider = spec.get("provider")
            if provider not in providers:
                raise ConfigError(f"{where}.provider {provider!r} is not a known provider")
            fallbacks = spec.get("fallbacks") or []
            if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
                raise ConfigError(f"{where}.fallbacks must be a list of model names")
            upstream = spec.get("model")
            if upstream is not None and not isinstance(upstream, str):
                raise ConfigError(f"{where}.model must be a string")
            models[str(name)] = ModelEntry(provider, upstream, tuple(fallbacks))
        router = cls(providers, models)
        for name, entry in models.items():
            for fb in entry.fallbacks:
                try:
                    router._direct(fb)
                except ModelNotFound:
                    raise ConfigError(f"MODELS_FILE: models.{name}.fallbacks names unknown model {fb!r}") from None
        return router

    def _direct(self, model: str) -> Target:
        """The primary target of ``model``, ignoring fallbacks and availability."""
        entry = self.models.get(model)
        if entry is not None:
            return Target(self.providers[entry.provider], entry.model or model)
        if "/" in model:
            prefix, rest = model.split("/", 1)
            if prefix in self.providers and rest:
                return Target(self.providers[prefix], rest)
        for prefix, provider in _PREFIXES:
            if model.startswith(prefix):
                return Target(self.providers[provider], model)
        raise ModelNotFound(f"The model '{shown_model(model)}' does not exist or is not routed by this gateway",
                            param="model")

    def resolve(self, model: str) -> tuple[Target, ...]:
        """Primary then fallbacks, skipping providers without a key; 404 or 503 when none."""
        found = self._resolved.get(model)
        if found is None:
            found = self._targets(model)
            if len(self._resolved) < MAX_REMEMBERED_MODELS:
                self._resolved[model] = found
        return found

    def _targets(self, model: str) -> tuple[Target, ...]:
        primary = self._direct(model)
        entry = self.models.get(model)
        candidates = [primary] + [self._direct(fb) for fb in (entry.fallbacks if entry else ())]
        targets = tuple(t for t in candidates if t.provider.available)
        if not targets:
            missing = sorted({t.provider.key_env or t.provider.name for t in candidates})
            raise NoHealthyProvider(
                f"No provider is configured for model '{model}': set {', '.join(missing)}",
                retry_after=None)
        return targets

    def wire_formats(self, model: str) -> set[str]:
        """The wire formats of every target of ``model``, keys or not (404 when it is not routed)."""
        entry = self.models.get(model)
        return {self._direct(name).provider.type for name in (model, *(entry.fallbacks if entry else ()))}

    def model_names(self) -> list[str]:
        """Every configured model name whose provider can be reached."""
        names = []
        for name in self.models:
            try:
                self.resolve(name)
            except (ModelNotFound, NoHealthyProvider):
                continue
            names.append(name)
        return names

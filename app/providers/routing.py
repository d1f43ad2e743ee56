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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Provider:
    """An upstream endpoint: its wire format, base URL and the gateway's own key."""

    name: str
    type: WireFormat
    base_url: str
    api_key: str | None
    key_env: str | None  # the variable that holds the key, for messages
    key_required: bool
    responses: bool = False  # serves OpenAI's Responses API (POST /responses): those requests are relayed

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
            if ptype not in ("openai", "anthropic"):
                raise ConfigError(f"{where}.type must be openai or anthropic, got {ptype!r}")
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

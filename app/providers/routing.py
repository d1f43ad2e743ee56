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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.config.settings import STRATEGIES, ConfigError, Settings, Strategy, read_secret
from app.config.yaml_file import load_yaml
from app.errors import ModelNotFound, NoHealthyProvider
from app.formats.common import shown_model
from app.providers import azure

WireFormat = Literal["openai", "anthropic"]
# Where a wire format is served: the vendor's own API (or a compatible server), or a cloud's.
Platform = Literal["direct", "azure", "bedrock", "vertex"]

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

    ``type`` is the wire format (what relay or translation is decided by); ``platform`` says who serves it:
    ``direct`` (the vendor's own API or a compatible server), ``azure`` (Azure OpenAI, URL and auth in
    ``app/providers/azure.py``) or a cloud adapted by ``app.providers.platforms`` (``CLOUD_PLATFORMS``:
    Bedrock, Vertex AI), with that platform's ``options`` (region, project, api version...).
    """

    name: str
    type: WireFormat
    base_url: str
    api_key: str | None
    key_env: str | None  # the variable that holds the key, for messages
    key_required: bool
    responses: bool = False  # serves OpenAI's Responses API (POST /responses): those requests are relayed
    platform: Platform = "direct"
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def available(self) -> bool:
        return bool(self.api_key) or not self.key_required

    def speaks(self, dialect: str) -> bool:
        """Whether a caller's body in ``dialect`` is relayed to this provider as it came."""
        return dialect == self.type or (dialect == "responses" and self.responses)


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request can go: provider plus the model name it knows.

    A model spread over deployments has one target per deployment: ``deployment`` names it (its breaker,
    cooldown, metrics and /health entry), ``group`` is the model name whose deployments these are.
    """

    provider: Provider
    model: str
    deployment: str | None = None
    group: str | None = None

    @property
    def breaker_name(self) -> str:
        """Whose circuit breaker this target answers to: its deployment's, else its provider's."""
        return self.deployment or self.provider.name


@dataclass(frozen=True, slots=True)
class Deployment:
    """One of a model's deployments: where it goes and its share of the traffic."""

    target: Target
    weight: float


@dataclass(frozen=True, slots=True)
class DeploymentGroup:
    """A model name served by several deployments, chosen per request by ``strategy``."""

    model: str
    strategy: Strategy | None  # None: DEPLOYMENT_STRATEGY
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    provider: str | None  # None when the model lists deployments
    model: str | None
    fallbacks: tuple[str, ...]
    group: DeploymentGroup | None = None


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
            if ptype not in ("openai", "anthropic", "azure"):
                raise ConfigError(f"{where}.type must be openai, anthropic, azure, {' or '.join(CLOUD_PLATFORMS)}, "
                                  f"got {ptype!r}")
            base_url = _base_url(spec, where)
            if base_url is None:
                raise ConfigError(f"{where}.base_url must be an http(s) URL")
            key_env = _key_env(spec, where)
            api_key = read_secret(environ, key_env) if key_env else None  # the *_FILE rule of every secret
            key_required = bool(spec.get("key_required", False))
            responses = spec.get("responses", False)
            if not isinstance(responses, bool) or (responses and ptype != "openai"):
                raise ConfigError(f"{where}.responses must be true or false, and true only for type openai")
            if ptype == "azure":
                options = azure.options_from(spec, where)
                providers[name] = Provider(name, "openai", base_url, api_key or None, key_env,
                                           "token_file" not in options, platform="azure", options=options)
            else:
                providers[name] = Provider(name, ptype, base_url, api_key or None, key_env, key_required,
                                           responses)
        models: dict[str, ModelEntry] = {}
        seen_deployments: set[str] = set()
        for name, spec in (data.get("models") or {}).items():
            where = f"MODELS_FILE: models.{name}"
            spec = spec or {}
            if not isinstance(spec, dict):
                raise ConfigError(f"{where} must be a mapping")
            fallbacks = spec.get("fallbacks") or []
            if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
                raise ConfigError(f"{where}.fallbacks must be a list of model names")
            upstream = spec.get("model")
            if upstream is not None and not isinstance(upstream, str):
                raise ConfigError(f"{where}.model must be a string")
            if "deployments" in spec:
                group = _deployment_group(str(name), spec, where, providers, environ, seen_deployments)
                models[str(name)] = ModelEntry(None, None, tuple(fallbacks), group)
                continue
            provider = spec.get("provider")
            if provider not in providers:
                raise ConfigError(f"{where}.provider {provider!r} is not a known provider")
            models[str(name)] = ModelEntry(provider, upstream, tuple(fallbacks))
        router = cls(providers, models)
        for name, entry in models.items():
            for fb in entry.fallbacks:
                try:
                    router._expand(fb)
                except ModelNotFound:
                    raise ConfigError(f"MODELS_FILE: models.{name}.fallbacks names unknown model {fb!r}") from None
        return router

    def _expand(self, model: str) -> tuple[Target, ...]:
        """The targets serving ``model`` itself (its deployments, or its one target), ignoring fallbacks."""
        entry = self.models.get(model)
        if entry is not None and entry.group is not None:
            return tuple(d.target for d in entry.group.deployments)
        return (self._direct(model),)

    def _direct(self, model: str) -> Target:
        """The primary target of ``model``, ignoring fallbacks and availability."""
        entry = self.models.get(model)
        if entry is not None and entry.group is not None:
            return entry.group.deployments[0].target
        if entry is not None and entry.provider is not None:
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
        entry = self.models.get(model)
        candidates = [t for name in (model, *(entry.fallbacks if entry else ())) for t in self._expand(name)]
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
    def groups(self) -> list[DeploymentGroup]:
        """Every model spread over deployments, in file order."""
        return [e.group for e in self.models.values() if e.group is not None]

    def keys(self) -> list[str]:
        """Every key this router may send: the providers' and the deployments' own (for ``register_keys``)."""
        keys = [p.api_key for p in self.providers.values() if p.api_key]
        for group in self.groups():
            keys += [d.target.provider.api_key for d in group.deployments if d.target.provider.api_key]
        return keys

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


def _base_url(spec: Mapping[str, Any], where: str) -> str | None:
    """``base_url`` without its trailing slash, None when absent; not an http(s) URL is a ConfigError."""
    base_url = spec.get("base_url")
    if base_url is None:
        return None
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    return base_url.rstrip("/")


def _key_env(spec: Mapping[str, Any], where: str) -> str | None:
    key_env = spec.get("api_key_env")
    if key_env is not None and not isinstance(key_env, str):
        raise ConfigError(f"{where}.api_key_env must be a variable name")
    return key_env


def _deployment_group(model: str, spec: Mapping[str, Any], where: str, providers: Mapping[str, Provider],
                      environ: Mapping[str, str], seen: set[str]) -> DeploymentGroup:
    """A model's ``deployments``: each a provider, its upstream model (Azure: the deployment name), an optional
    key (``api_key_env``, or the file its ``*_FILE`` names), base URL, region (``options["region"]``) and
    weight. Several keys for one provider
    are several deployments. Names (``name``, else ``provider/model``) are unique in the file: they label
    the metrics and /health."""
    if "provider" in spec or "model" in spec:
        raise ConfigError(f"{where}: give either provider/model or deployments, not both")
    strategy = spec.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"{where}.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    listed = spec["deployments"]
    if not isinstance(listed, list) or not listed:
        raise ConfigError(f"{where}.deployments must be a non-empty list")
    deployments = []
    for i, dep in enumerate(listed):
        at = f"{where}.deployments[{i}]"
        if not isinstance(dep, dict):
            raise ConfigError(f"{at} must be a mapping")
        unknown = sorted(set(dep) - {"name", "provider", "model", "api_key_env", "base_url", "region", "weight"})
        if unknown:
            raise ConfigError(f"{at}: unknown field {unknown[0]!r}")
        base = providers.get(dep.get("provider"))  # type: ignore[arg-type]
        if base is None:
            raise ConfigError(f"{at}.provider {dep.get('provider')!r} is not a known provider")
        upstream = dep.get("model", model)
        if not isinstance(upstream, str) or not upstream:
            raise ConfigError(f"{at}.model must be a string")
        weight = dep.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 10**6:
            raise ConfigError(f"{at}.weight must be a number above 0")
        name = dep.get("name") or f"{base.name}/{upstream}"
        if not isinstance(name, str) or name in seen:
            raise ConfigError(f"{at}.name {name!r} is already used by another deployment; give each a `name`")
        seen.add(name)
        provider = base
        key_env = _key_env(dep, at)
        if key_env:
            provider = replace(provider, api_key=read_secret(environ, key_env) or None, key_env=key_env)
        base_url = _base_url(dep, at)
        if base_url:
            provider = replace(provider, base_url=base_url)
        region = dep.get("region")
        if region is not None:  # for platforms whose URL or signature names a region
            if not isinstance(region, str) or not region:
                raise ConfigError(f"{at}.region must be a region name")
            provider = replace(provider, options={**provider.options, "region": region})
        deployments.append(Deployment(Target(provider, upstream, name, model), float(weight)))
    return DeploymentGroup(model, strategy, tuple(deployments))

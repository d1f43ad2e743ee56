"""What a request cost upstream, in US cents, from its token usage and PRICING_FILE.

Loaded once per process and read-only afterwards, so every thread shares it.
Prices are per million tokens (the providers' own unit); cents keep the
Prometheus counters and budgets in small, readable numbers. A model without a
price costs 0 rather than failing a request, and says so once per model in
the log so an operator can add it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.config.settings import ConfigError
from app.formats.canonical import Usage
from app.providers.routing import load_yaml

log = logging.getLogger("llm_edge.cost")

# A trailing release date (-2024-08-06, -20241022) or "-latest": the same price as the bare name.
_VERSION_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
# Client-chosen model names must not grow the memo or the warned set without bound.
_MEMO_LIMIT = 1024
# A request's input tokens, estimated before it is sent: its upstream body's bytes / 4 (about 4
# bytes a token for English text and JSON; more for base64 images, fewer for e.g. CJK text).
BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float

    def cents(self, usage: Usage) -> float:
        cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
        dollars = ((usage.input_tokens - cached) * self.input + cached * self.cached_input
                   + usage.output_tokens * self.output) / 1_000_000
        return dollars * 100


def _price(spec: Any, where: str) -> Price:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with input and output prices")
    values: dict[str, float] = {}
    for key in ("input", "output", "cached_input"):
        raw = spec.get(key)
        if raw is None and key != "cached_input":
            raise ConfigError(f"{where}.{key} is missing (US dollars per million tokens)")
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
            raise ConfigError(f"{where}.{key} must be a number of dollars >= 0, got {raw!r}")
        values[key] = float(raw)
    return Price(values["input"], values["output"], values.get("cached_input", values["input"]))


class PriceTable:
    """Model name -> price, with the lookup rules of config/pricing.yaml."""

    def __init__(self, models: Mapping[str, Price], providers: Mapping[str, Price] | None = None) -> None:
        self._models = dict(models)
        self._providers = dict(providers or {})
        self._memo: dict[tuple[str, str], Price | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str) -> PriceTable:
        """Parse PRICING_FILE; a bad entry is a ConfigError naming it, a missing file an empty table."""
        data = load_yaml(path, "PRICING_FILE")
        if not data:
            log.warning("no prices in %s (PRICING_FILE): every request counts as costing 0", path)
        models: dict[str, Price] = {}
        for name, spec in (data.get("models") or {}).items():
            where = f"PRICING_FILE: models.{name}"
            price = _price(spec, where)
            models[str(name)] = price
            aliases = spec.get("aliases") or []
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise ConfigError(f"{where}.aliases must be a list of model names")
            for alias in aliases:
                models[alias] = price
        providers = {str(name): _price(spec, f"PRICING_FILE: providers.{name}")
                     for name, spec in (data.get("providers") or {}).items()}
        return cls(models, providers)

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def price(self, provider: str, model: str) -> Price | None:
        key = (provider, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._models.get(model)
        if found is None:
            found = self._models.get(_VERSION_SUFFIX.sub("", model))
        if found is None:
            found = self._providers.get(provider)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[key] = found
        return found

    def cost_cents(self, provider: str, model: str, usage: Usage) -> float:
        """US cents for ``usage`` of ``model``; 0 (and one warning per model) when it has no price."""
        price = self.price(provider, model)
        if price is None:
            self._warn_unpriced(provider, model)
            return 0.0
        return price.cents(usage)

    def worst_case_cents(self, targets: Iterable[tuple[str, str]], output_tokens: int, request_bytes: int) -> float:
        """The most a request can cost on any of ``targets`` (provider, model): its whole output
        allowance plus its input estimated as ``request_bytes / BYTES_PER_TOKEN`` tokens."""
        usage = Usage(input_tokens=-(-request_bytes // BYTES_PER_TOKEN), output_tokens=output_tokens)
        prices = [self.price(provider, model) for provider, model in targets]
        return max((price.cents(usage) for price in prices if price is not None), default=0.0)

    def _warn_unpriced(self, provider: str, model: str) -> None:
        with self._lock:
            if model in self._warned or len(self._warned) >= _MEMO_LIMIT:
                return
            self._warned.add(model)
        log.warning("model %r of provider %r has no price in PRICING_FILE: its cost counts as 0",
                    model, provider, extra={"fields": {"provider": provider, "model": model}})

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
from app.config.yaml_file import load_yaml
from app.formats.canonical import Usage

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
    """US dollars per million tokens (``web_search``: per thousand requests), as PRICING_FILE says.

    ``cached_input`` is the price of prompt tokens read from the provider's prompt cache;
    ``cache_write`` of tokens written to it with the default (5-minute) lifetime, ``None`` meaning
    the input price (OpenAI bills cache writes as plain input); ``cache_write_1h`` of those written
    with a one-hour lifetime, ``None`` meaning ``cache_write``. Reasoning tokens are output tokens.
    """

    input: float
    output: float
    cached_input: float
    cache_write: float | None = None
    cache_write_1h: float | None = None
    web_search: float = 0.0

    def cents(self, usage: Usage) -> float:
        """The bill: each part of the prompt at its price, output, and web searches per request."""
        total = max(usage.input_tokens, 0)
        read = min(max(usage.cache_read_tokens, 0), total)
        write = min(max(usage.cache_write_tokens, 0), total - read)
        write_1h = min(max(usage.cache_write_1h_tokens, 0), write)
        write_5m_price = self.input if self.cache_write is None else self.cache_write
        write_1h_price = write_5m_price if self.cache_write_1h is None else self.cache_write_1h
        dollars = ((total - read - write) * self.input + read * self.cached_input
                   + (write - write_1h) * write_5m_price + write_1h * write_1h_price
                   + usage.output_tokens * self.output) / 1_000_000
        dollars += max(usage.web_search_requests, 0) * self.web_search / 1000
        return dollars * 100

    def prompt_cache_savings_cents(self, usage: Usage) -> float:
        """What the provider's prompt cache saved: cache reads at the input price minus their real price."""
        read = min(max(usage.cache_read_tokens, 0), max(usage.input_tokens, 0))
        return max(read * (self.input - self.cached_input), 0.0) / 1_000_000 * 100


_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "web_search")


def _price(spec: Any, where: str) -> Price:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with input and output prices")
    values: dict[str, float] = {}
    for key in _PRICE_KEYS:
        raw = spec.get(key)
        if raw is None and key in ("input", "output"):
            raise ConfigError(f"{where}.{key} is missing (US dollars per million tokens)")
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
            raise ConfigError(f"{where}.{key} must be a number of dollars >= 0, got {raw!r}")
        values[key] = float(raw)
    unknown = sorted(set(spec) - {*_PRICE_KEYS, "aliases"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not a price this file knows (one of {', '.join(_PRICE_KEYS)})")
    return Price(values["input"], values["output"], values.get("cached_input", values["input"]),
                 values.get("cache_write"), values.get("cache_write_1h"), values.get("web_search", 0.0))


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

    def prompt_cache_savings_cents(self, provider: str, model: str, usage: Usage) -> float:
        """US cents the provider's own prompt cache saved on ``usage`` (0 without a price)."""
        price = self.price(provider, model)
        return 0.0 if price is None else price.prompt_cache_savings_cents(usage)

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

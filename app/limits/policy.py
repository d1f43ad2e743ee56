"""The rate limit file (``RATE_LIMITS_FILE``): global and per-tier limits.

The seed's format is kept as it is; each tier may instead be a mapping that
adds the optional limits this gateway supports beyond it::

    rate_limiting:
      global:
        requests_per_second: 10000
      per_client:
        tier_free: 10                  # the seed's form: requests per second
        tier_pro:                      # the extended form
          requests_per_second: 100
          burst: 200                   # requests that may arrive at once (default: one second's worth)
          tokens_per_minute: 400000    # optional

Every limit becomes a ``Rate`` once, at load, so the request path only reads
precomputed intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.config.settings import ConfigError

_SETTING = "RATE_LIMITS_FILE"


@dataclass(frozen=True, slots=True)
class Rate:
    """A GCRA limit: one unit every ``interval`` seconds, ``burst`` units at once.

    ``period`` (= burst x interval) is how far ahead of now the theoretical
    arrival time may run before a request is refused.
    """

    per_second: float
    burst: float

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def period(self) -> float:
        return self.burst * self.interval

    def share(self, parts: int) -> Rate:
        """This limit split evenly over ``parts`` independent counters (Redis down: one per worker)."""
        if parts <= 1:
            return self
        return Rate(self.per_second / parts, max(1.0, self.burst / parts))


@dataclass(frozen=True, slots=True)
class TokenRate:
    """Tokens per minute: admitted while the last minute's tokens are under the limit."""

    per_minute: int
    window: float = 60.0

    @property
    def interval(self) -> float:
        return self.window / self.per_minute

    def share(self, parts: int) -> TokenRate:
        if parts <= 1:
            return self
        return TokenRate(max(1, self.per_minute // parts), self.window)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    requests: Rate
    tokens: TokenRate | None = None


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    global_requests: Rate | None
    tiers: Mapping[str, Tier]

    def tier(self, name: str) -> Tier:
        return self.tiers[name]


def _positive(value: Any, where: str, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{_SETTING}: {where} must be {kind}, got {value!r}")
    return float(value)


def _rate(spec: Mapping[str, Any], where: str) -> Rate:
    if "requests_per_second" not in spec:
        raise ConfigError(f"{_SETTING}: {where}.requests_per_second is missing")
    rps = _positive(spec["requests_per_second"], f"{where}.requests_per_second")
    burst = spec.get("burst")
    burst_value = max(1.0, float(round(rps))) if burst is None else _positive(burst, f"{where}.burst", integer=True)
    return Rate(rps, burst_value)


def _tier(name: str, spec: Any, where: str) -> Tier:
    if not isinstance(spec, Mapping):
        return Tier(name, Rate(_positive(spec, where), max(1.0, float(round(spec)))))
    unknown = set(spec) - {"requests_per_second", "burst", "tokens_per_minute"}
    if unknown:
        raise ConfigError(f"{_SETTING}: {where} has unknown field {sorted(unknown)[0]!r}")
    tpm = spec.get("tokens_per_minute")
    tokens = None if tpm is None else TokenRate(int(_positive(tpm, f"{where}.tokens_per_minute", integer=True)))
    return Tier(name, _rate(spec, where), tokens)


def parse_policy(data: Mapping[str, Any]) -> LimitPolicy:
    """The policy from the file's parsed YAML; a ``ConfigError`` names the bad field."""
    section = data.get("rate_limiting")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{_SETTING}: the file must have a 'rate_limiting' mapping")
    unknown = set(section) - {"global", "per_client"}
    if unknown:
        raise ConfigError(f"{_SETTING}: rate_limiting has unknown field {sorted(unknown)[0]!r}")
    global_spec = section.get("global")
    if global_spec is not None and not isinstance(global_spec, Mapping):
        raise ConfigError(f"{_SETTING}: rate_limiting.global must be a mapping")
    global_rate = _rate(global_spec, "rate_limiting.global") if global_spec else None
    per_client = section.get("per_client")
    if not isinstance(per_client, Mapping) or not per_client:
        raise ConfigError(f"{_SETTING}: rate_limiting.per_client must map tier_<name> to a limit")
    tiers: dict[str, Tier] = {}
    for key, spec in per_client.items():
        where = f"rate_limiting.per_client.{key}"
        name = str(key).removeprefix("tier_")
        if not name:
            raise ConfigError(f"{_SETTING}: {where} needs a tier name")
        if name in tiers:
            raise ConfigError(f"{_SETTING}: {where} repeats tier {name!r}")
        tiers[name] = _tier(name, spec, where)
    return LimitPolicy(global_rate, tiers)

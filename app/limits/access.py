"""Builds access control for one worker: the middleware and what health and hooks look at."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.config.settings import Settings
from app.limits.budgets import Budgets, SpentCents
from app.limits.config import AccessConfig, load_access_config
from app.limits.middleware import AccessMiddleware
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard

log = logging.getLogger("llm_edge.access_control")


@dataclass(frozen=True, slots=True)
class Access:
    config: AccessConfig
    limiter: RateLimiter
    middleware: AccessMiddleware


def build_access(settings: Settings, guard: RedisGuard, spent_cents: SpentCents | None = None) -> Access:
    """``spent_cents`` feeds spend budgets; without it budgets in the clients file are not enforced."""
    config = load_access_config(settings)
    # Redis away: each worker of each replica limits alone, at its share of every limit.
    limiter = RateLimiter(config.policy, guard, settings.web_concurrency * settings.rate_limit_replicas,
                          lease_window=settings.rate_limit_lease_ms / 1000,
                          refuse_without_redis=settings.rate_limit_without_redis == "refuse")
    limiter.load_scripts()
    with_budget = [c.id for c in config.clients.clients if c.budgets]
    if with_budget and spent_cents is None:
        log.warning("spend budgets are configured but no spend ledger is available: not enforced",
                    extra={"fields": {"clients": with_budget}})
    middleware = AccessMiddleware(config.clients, config.policy, limiter, Budgets(spent_cents))
    return Access(config, limiter, middleware)


"""Wires the gateway together, once per worker process (after fork).

Everything with a socket or a lock (the urllib3 PoolManager, the Redis
client, the L1 cache) is built here, in the worker, because neither urllib3
nor lru-dict survives a fork. Tests call ``create_gateway`` with their own
settings and environment instead of monkeypatching.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import falcon

from app.accounting.cost import PriceTable
from app.accounting.spend import SpendLedger
from app.accounting.usage import Accounting
from app.cache.coalesce import Coalescer
from app.cache.l1 import L1Cache
from app.cache.l2 import L2Cache
from app.cache.response_store import ResponseStore
from app.cache.stage import CacheStage
from app.cache.tiered import TieredCache
from app.config.settings import Settings, is_configured, load_environ
from app.config.trusted_proxies import ClientAddress
from app.formats import anthropic as anthropic_codec
from app.formats import openai as openai_codec
from app.health import Check
from app.http import error_handlers
from app.http.app import GatewayApp
from app.http.draining import DrainState
from app.http.middleware import RequestContextMiddleware
from app.http.resources.chat import ChatResource
from app.http.resources.count_tokens import CountTokensResource
from app.http.resources.embeddings import EmbeddingsResource
from app.http.resources.health import HealthResource
from app.http.resources.models import MODEL_ROUTE, ModelsResource
from app.http.resources.responses import ResponsesResource, StoredResponseResource
from app.limits.access import Access, build_access
from app.limits.budgets import BudgetReservations
from app.observability import metrics
from app.observability.tracing import Tracing
from app.pipeline import BudgetHolds, Pipeline
from app.providers.balancer import Balancer
from app.providers.count_tokens import TokenCountRelay
from app.providers.embeddings import EmbeddingsRelay
from app.providers.http import UpstreamHTTP
from app.providers.responses_relay import StoredResponseRelay
from app.providers.routing import Router
from app.providers.upstream import UpstreamCaller, register_keys
from app.resilience.breaker import BreakerPolicy, Breakers
from app.resilience.disconnects import DisconnectWatcher
from app.resilience.redis_guard import RedisGuard, make_redis
from app.resilience.retry import RetryPolicy

log = logging.getLogger("llm_edge")


@dataclass(slots=True)
class Gateway:
    """The app and the long-lived collaborators that gunicorn hooks and tests reach for."""

    app: falcon.App
    settings: Settings
    router: Router
    draining: DrainState
    http: UpstreamHTTP
    redis: RedisGuard
    cache: CacheStage
    prices: PriceTable
    spend: SpendLedger
    tracing: Tracing
    breakers: Breakers


def _providers_check(router: Router) -> Check:
    available = {name: p.available for name, p in router.providers.items()}
    if not any(available.values()):
        return Check("degraded", {"available": available, "reason": "no provider has an API key"})
    return Check("ok", {"available": available})


def make_cache(settings: Settings, redis_guard: RedisGuard, accounting: Accounting | None = None) -> CacheStage:
    """L1 per worker, Redis L2 when enabled, coalescing unless switched off; hits counted as savings."""
    l1: L1Cache = L1Cache(settings.l1_cache_size, settings.l1_max_bytes, settings.l1_ttl_seconds)
    l2 = (L2Cache(redis_guard, settings.l2_ttl_seconds, write_behind=settings.l2_write_behind)
          if settings.enable_l2_cache else None)
    return CacheStage(TieredCache(l1, l2), namespace=settings.cache_namespace,
                      coalescer=Coalescer() if settings.cache_coalescing else None,
                      savings=accounting.cache_hit if accounting is not None else None)


def budget_holds(settings: Settings, guard: RedisGuard, spend: SpendLedger, prices: PriceTable,
                 access: Access) -> BudgetHolds | None:
    """Worst-case holds against spend budgets, for the clients that have one (None: no client has)."""
    budgets = {c.id: c.budgets for c in access.config.clients.clients if c.budgets}
    if not budgets:
        return None
    # A hold a dead process never ended is dropped after this long: longer than any request runs.
    reservations = BudgetReservations(guard, spend.key, spend.add, spend.spent,
                                      hold_seconds=2 * settings.request_timeout + 60)
    return BudgetHolds(reservations, prices, lambda client_id: budgets.get(client_id, {}),
                       settings.default_max_tokens)


def create_gateway(settings: Settings | None = None, environ: Mapping[str, str] | None = None) -> Gateway:
    environ = load_environ() if environ is None else environ
    settings = Settings.from_env(environ) if settings is None else settings
    router = Router.from_settings(settings, environ)
    register_keys(router.keys())  # every provider's and deployment's key: scrubbed from every provider error
    http = UpstreamHTTP(connect_timeout=settings.upstream_connect_timeout,
                        pool_maxsize=max(10, settings.gunicorn_threads))
    redis_guard = RedisGuard(make_redis(settings))  # one per worker, shared by the cache, limiter and spend
    cache_redis = redis_guard  # unless CACHE_REDIS_URL gives the L2 cache a Redis of its own
    if settings.cache_redis_url and settings.enable_l2_cache:
        cache_redis = RedisGuard(make_redis(settings, settings.cache_redis_url), serves="using the L1 cache")
    prices = PriceTable.load(settings.pricing_file)
    deployments = [d.target for group in router.groups() for d in group.deployments]
    metrics.initialize(router.providers, [*router.models, *prices.model_names],
                       [(entry.provider, entry.model or name) for name, entry in router.models.items()
                        if entry.provider is not None] + [(t.provider.name, t.model) for t in deployments])
    spend = SpendLedger(redis_guard)
    access = build_access(settings, redis_guard, spend.spent)  # budgets read the spend ledger
    accounting = Accounting(prices, spend, tokens=access.middleware.count_tokens)
    # Here, after fork: its thread and channel are per worker.
    tracing = Tracing.from_settings(settings, default_endpoint=not is_configured(environ, "OTLP_ENDPOINT"))
    cache = make_cache(settings, cache_redis, accounting)
    breakers = Breakers([*router.providers, *(t.breaker_name for t in deployments)],
                        BreakerPolicy.from_settings(settings),
                        publish=lambda name, state: metrics.CIRCUIT_BREAKER_STATE.labels(name).set(state))
    balancer = Balancer(router.groups(), settings.deployment_strategy, settings.deployment_cooldown)
    watcher = DisconnectWatcher()  # its thread starts with the first miss or stream, in this worker
    pipeline = Pipeline(router, UpstreamCaller(http, settings), settings.request_timeout, cache,
                        accounting=accounting, tracing=tracing, log_prompts=settings.log_prompts,
                        retry=RetryPolicy.from_settings(settings), breakers=breakers,
                        holds=budget_holds(settings, redis_guard, spend, prices, access), watcher=watcher,
                        balancer=balancer)
    draining = DrainState()

    app = GatewayApp(middleware=[RequestContextMiddleware(
        tracing, client_address=ClientAddress(settings.forwarded_allow_ips)), access.middleware])
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = False
    for path, codec in (("/v1/chat/completions", openai_codec), ("/v1/messages", anthropic_codec)):
        app.add_route(path, ChatResource(codec, pipeline, settings.max_request_bytes, watcher, draining,
                                         forward_openai_org=settings.forward_openai_org_headers))
    responses_store = ResponseStore(cache_redis, settings.responses_ttl_seconds)
    app.add_route("/v1/responses", ResponsesResource(pipeline, responses_store, settings.max_request_bytes, watcher,
                                                     draining, forward_openai_org=settings.forward_openai_org_headers))
    stored = StoredResponseResource(responses_store, router, StoredResponseRelay(http, settings))
    app.add_route("/v1/responses/{response_id}", stored)
    app.add_route("/v1/responses/{response_id}/input_items", stored, suffix="input_items")
    models = ModelsResource(router)
    app.add_route("/v1/models", models)
    app.add_route(MODEL_ROUTE, models, suffix="one")
    app.add_route("/v1/embeddings", EmbeddingsResource(pipeline, EmbeddingsRelay(http, settings),
                                                       settings.max_request_bytes,
                                                       forward_openai_org=settings.forward_openai_org_headers))
    app.add_route("/v1/messages/count_tokens", CountTokensResource(
        router, TokenCountRelay(http, settings), breakers, RetryPolicy.from_settings(settings), tracing,
        settings.request_timeout, settings.max_request_bytes))
    checks = {"providers": lambda: _providers_check(router), "redis": redis_guard.health,
              "circuit_breakers": breakers.health, "rate_limits": access.limiter.health}
    if cache_redis is not redis_guard:
        checks["cache_redis"] = cache_redis.health
    if deployments:
        checks["deployments"] = balancer.health
    health = HealthResource(checks, draining)
    app.add_route("/health", health)
    app.add_route("/health/live", health, suffix="live")
    app.add_route("/health/ready", health, suffix="ready")
    error_handlers.install(app)
    return Gateway(app=app, settings=settings, router=router, draining=draining, http=http, redis=redis_guard,
                   cache=cache, prices=prices, spend=spend, tracing=tracing, breakers=breakers)

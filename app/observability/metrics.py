"""Every Prometheus metric of the gateway, defined once.

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set by gunicorn.conf.py before
any worker imports this module, so prometheus_client writes each worker's
values to files that the master sums on ``METRICS_PORT``. Gauges therefore
declare how workers combine (``livesum``, ``livemax``). Label values are
bounded: endpoints, providers and configured or seen model names, tiers and
error kinds; never a request id or a key.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# From a cache hit in well under a millisecond to a long generation of minutes.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                   10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

REQUESTS = Counter("llm_edge_requests_total", "Requests answered, by endpoint, provider, model and status",
                   ["endpoint", "provider", "model", "status"])
REQUEST_DURATION = Histogram("llm_edge_request_duration_seconds",
                             "Time from request to the last byte of the answer",
                             ["endpoint", "provider", "cache"], buckets=LATENCY_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("llm_edge_time_to_first_token_seconds",
                                "Streams: time from request to the first content delta sent",
                                ["provider"], buckets=LATENCY_BUCKETS)
PROVIDER_DURATION = Histogram("llm_edge_provider_duration_seconds",
                              "Time spent in each upstream attempt", ["provider", "model"],
                              buckets=LATENCY_BUCKETS)
PROVIDER_ERRORS = Counter("llm_edge_provider_errors_total", "Failed upstream attempts by kind",
                          ["provider", "error_type"])
CACHE_HITS = Counter("llm_edge_cache_hits_total", "Cache hits by tier (l1, l2)", ["tier"])
CACHE_MISSES = Counter("llm_edge_cache_misses_total", "Cache misses by tier (l1, l2)", ["tier"])
CACHE_COALESCED = Counter("llm_edge_cache_coalesced_total",
                          "Requests answered by an identical request already in progress in the worker")
TOKENS = Counter("llm_edge_tokens_total", "Tokens processed upstream", ["provider", "model", "type"])
COST_CENTS = Counter("llm_edge_cost_total_cents", "Upstream spend in US cents", ["provider", "model"])
CACHE_SAVINGS_CENTS = Counter("llm_edge_cache_savings_total_cents",
                              "Spend avoided by answering from the cache, in US cents", ["provider", "model"])
CIRCUIT_BREAKER_STATE = Gauge("llm_edge_circuit_breaker_state",
                              "Provider breaker: 0 closed, 1 half-open, 2 open (worst worker)", ["provider"],
                              multiprocess_mode="livemax")
RATE_LIMITED = Counter("llm_edge_rate_limited_total", "Requests refused by a limit", ["tier", "limit"])
IN_FLIGHT = Gauge("llm_edge_in_flight_requests", "Requests being served now", multiprocess_mode="livesum")
REDIS_ERRORS = Counter("llm_edge_redis_errors_total",
                       "Redis operations that failed, or were skipped while the Redis breaker is open",
                       ["operation", "outcome"])
FALLBACKS = Counter("llm_edge_fallbacks_total", "Requests answered by a fallback target",
                    ["from_provider", "to_provider"])
RETRIES = Counter("llm_edge_retries_total", "Upstream attempts retried", ["provider"])
CLIENT_DISCONNECTS = Counter("llm_edge_client_disconnects_total", "Streams abandoned by the client",
                             ["endpoint"])

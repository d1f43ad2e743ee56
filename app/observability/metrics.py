"""Every Prometheus metric of the gateway, defined once.

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set by gunicorn.conf.py before
any worker imports this module, so prometheus_client writes each worker's
values to files that the master sums on ``METRICS_PORT``. Gauges therefore
declare how workers combine (``livesum``, ``livemax``). Label values are
bounded: endpoints, providers and configured or seen model names, tiers and
error kinds; never a request id or a key.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from functools import partial

from prometheus_client import Counter, Gauge, Histogram

from app.errors import ERROR_TYPES
from app.patches import prometheus_client as prometheus_patches

prometheus_patches.use_lean_values()  # before any metric below is created: the same files, a shorter update

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
# The contract fixes these two names, which do not end in _total. prometheus_client would export a
# Counter as <name>_total, and Prometheus's linter (promtool check metrics) rejects a counter without
# that suffix, so they are gauges that only ever grow: summed over every worker, dead ones included
# (multiprocess "sum"), exactly like a counter. rate() and increase() work on them as on counters.
COST_CENTS = Gauge("llm_edge_cost_total_cents", "Upstream spend in US cents (only grows; use rate/increase)",
                   ["provider", "model"], multiprocess_mode="sum")
CACHE_SAVINGS_CENTS = Gauge("llm_edge_cache_savings_total_cents",
                            "Spend avoided by answering from the cache, in US cents (only grows; use "
                            "rate/increase)", ["provider", "model"], multiprocess_mode="sum")
# Beside the gateway cache's savings: what the provider's own prompt cache saved on the answers it billed
# (cache-read tokens x (input price - cache-read price)). Not part of the contract's table; a gauge that only
# grows, like the two above, so the name needs no _total.
PROMPT_CACHE_SAVINGS_CENTS = Gauge("llm_edge_prompt_cache_savings_cents",
                                   "Spend the provider's prompt cache saved (cache reads billed below the input "
                                   "price), in US cents (only grows; use rate/increase)", ["provider", "model"],
                                   multiprocess_mode="sum")
CIRCUIT_BREAKER_STATE = Gauge("llm_edge_circuit_breaker_state",
                              "Provider breaker: 0 closed, 1 half-open, 2 open (worst worker)", ["provider"],
                              multiprocess_mode="livemax")
# Deployments of a model (config/models.yaml `deployments`): labelled by the configured deployment names only.
# Their breakers are in llm_edge_circuit_breaker_state under the deployment's name.
DEPLOYMENT_ATTEMPTS = Counter("llm_edge_deployment_attempts_total", "Upstream attempts per deployment, by outcome",
                              ["deployment", "outcome"])
DEPLOYMENT_IN_FLIGHT = Gauge("llm_edge_deployment_in_flight", "Attempts awaiting a deployment's answer now",
                             ["deployment"], multiprocess_mode="livesum")
DEPLOYMENT_COOLDOWN_UNTIL = Gauge("llm_edge_deployment_cooldown_until_seconds",
                                  "Unix time until which a deployment is skipped after a 429/5xx (in the past: "
                                  "ready; latest worker)", ["deployment"], multiprocess_mode="livemax")
RATE_LIMITED = Counter("llm_edge_rate_limited_total", "Requests refused by a limit", ["tier", "limit"])
IN_FLIGHT = Gauge("llm_edge_in_flight_requests", "Requests being served now", multiprocess_mode="livesum")
REDIS_ERRORS = Counter("llm_edge_redis_errors_total",
                       "Redis operations that failed, or were skipped while the Redis breaker is open",
                       ["operation", "outcome"])
FALLBACKS = Counter("llm_edge_fallbacks_total", "Requests answered by a fallback target",
                    ["from_provider", "to_provider"])
RETRIES = Counter("llm_edge_retries_total", "Upstream attempts retried", ["provider"])
CLIENT_DISCONNECTS = Counter("llm_edge_client_disconnects_total", "Requests whose client hung up before the end",
                             ["endpoint"])


_children: dict[tuple[object, ...], object] = {}


def child(metric, *values: str):  # type: ignore[no-untyped-def]
    """``metric.labels(*values)``, remembered: the request path asks for the same few label sets over and over.

    prometheus_client's ``labels`` checks and converts the values and takes a lock every time (~1.5 us);
    a dict lookup is a fraction of that. Bounded like the label values themselves (see module docstring);
    the metrics' children are never removed.
    """
    key = (metric, *values)
    found = _children.get(key)
    if found is None:
        found = _children.setdefault(key, metric.labels(*values))
    return found


_adders: dict[tuple[object, ...], Callable[[float], None]] = {}
_observers: dict[tuple[object, ...], Callable[[float], None]] = {}
_steps: dict[tuple[object, ...], Callable[[], None]] = {}


def adder(metric, *values: str) -> Callable[[float], None]:  # type: ignore[no-untyped-def]
    """What ``child(metric, *values).inc`` does (a counter's or a gauge's), as one call, remembered.

    prometheus_client's ``inc`` first checks that the metric is observable (a labelled child always is),
    then adds to its value, then looks at exemplars (the gateway sets none); the adder calls the value's
    own ``inc`` directly (the same value, the same file). A counter's adder still refuses a negative
    amount with prometheus_client's ``ValueError``.
    """
    key = (metric, *values)
    found = _adders.get(key)
    if found is None:
        found = _adders.setdefault(key, _adder_of(child(metric, *values) if values else metric))
    return found


def _adder_of(observable) -> Callable[[float], None]:  # type: ignore[no-untyped-def]
    inc = observable._value.inc
    if not isinstance(observable, Counter):
        return inc  # type: ignore[no-any-return]

    def add(amount: float) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        inc(amount)

    return add


def counter_step(metric, *values: str, step: float = 1.0) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    """``child(metric, *values).inc(step)`` as a call without arguments, remembered: the value's own ``inc``
    with the step bound (``functools.partial``, a C call: no Python frame). ``step`` is fixed here, so a
    counter's cannot go negative unchecked (``ValueError`` here, as prometheus_client would raise it at the
    first ``inc``)."""
    key = (metric, step, *values)
    found = _steps.get(key)
    if found is None:
        observable = child(metric, *values) if values else metric
        if step < 0 and isinstance(observable, Counter):
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        found = _steps.setdefault(key, partial(observable._value.inc, step))
    return found


def observer(metric, *values: str) -> Callable[[float], None]:  # type: ignore[no-untyped-def]
    """What ``child(metric, *values).observe`` does (a histogram's), as one call, remembered.

    The sum and the one bucket the amount falls in (the first bound not below it: prometheus_client walks
    the bounds in order, this bisects them), through the values' own ``inc`` (the lean values' ``inc_with``:
    both under one lock).
    """
    key = (metric, *values)
    found = _observers.get(key)
    if found is None:
        histogram = child(metric, *values) if values else metric
        add_sum = histogram._sum.inc
        bounds = tuple(histogram._upper_bounds)
        cells = tuple(histogram._buckets)
        buckets = tuple(bucket.inc for bucket in cells)
        together = getattr(histogram._sum, "inc_with", None)  # the lean values: sum and bucket under one lock

        def observe(amount: float) -> None:
            if amount != amount:  # NaN falls in no bucket (no bound is >= it), as in prometheus_client
                add_sum(amount)
            elif together is not None:
                together(amount, cells[bisect_left(bounds, amount)], 1.0)
            else:
                add_sum(amount)
                buckets[bisect_left(bounds, amount)](1.0)

        found = _observers.setdefault(key, observe)
    return found


_endings: dict[tuple[str, ...], Callable[[float], None]] = {}


def request_ended(endpoint: str, provider: str, model: str, status: str, cache: str) -> Callable[[float], None]:
    """A request's end as one call of its duration, remembered per label set: ``llm_edge_requests_total``,
    the duration histogram (sum and bucket), then in-flight down, in that order (in-flight last: a scrape
    that finds nothing in flight finds every answered request counted).

    With the lean values (app/patches/prometheus_client.py) the four updates go under one hold of their
    lock (``inc_each``): two locks and three Python calls fewer per request than step, observer and step.
    """
    key = (endpoint, provider, model, status, cache)
    found = _endings.get(key)
    if found is None:
        counted = counter_step(REQUESTS, endpoint, provider, model, status)
        observe = observer(REQUEST_DURATION, endpoint, provider, cache)
        gone = counter_step(IN_FLIGHT, step=-1.0)
        inc_each = getattr(type(IN_FLIGHT._value), "inc_each", None)
        histogram = child(REQUEST_DURATION, endpoint, provider, cache)
        count, total, in_flight = child(REQUESTS, endpoint, provider, model, status)._value, histogram._sum, \
            IN_FLIGHT._value
        bounds, cells = tuple(histogram._upper_bounds), tuple(histogram._buckets)

        def ended(duration: float) -> None:
            if inc_each is None or duration != duration:  # stock values; NaN falls in no bucket (observer's way)
                counted()
                observe(duration)
                gone()
                return
            inc_each(((count, 1.0), (total, duration), (cells[bisect_left(bounds, duration)], 1.0), (in_flight, -1.0)))

        found = _endings.setdefault(key, ended)
    return found


class LabelGuard:
    """Keeps one label's values bounded when callers can choose them (model names).

    Known values (configured models, priced models) pass; other values pass
    once ``admit``ted (a provider really answered with that model), up to
    ``limit`` of them; everything else is reported as ``other``.
    """

    OTHER = "other"

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._admitted = 0
        self._lock = threading.Lock()

    def allow(self, values: Iterable[str]) -> None:
        with self._lock:
            self._known.update(values)

    def admit(self, value: str) -> str:
        if value in self._known:
            return value
        with self._lock:
            if value not in self._known and self._admitted < self.limit:
                self._known.add(value)
                self._admitted += 1
        return value if value in self._known else self.OTHER

    def __call__(self, value: str | None) -> str:
        if value is None:
            return "none"
        return value if value in self._known else self.OTHER


MODEL_LABELS = LabelGuard()
CACHE_TIERS = ("l1", "l2")
# llm_edge_rate_limited_total{limit}: which limit refused the request (the limiter's names).
RATE_LIMIT_KINDS = ("requests", "global", "tokens", "budget")
TIERS = ("free", "pro", "enterprise")
ENDPOINTS = ("/v1/chat/completions", "/v1/messages")


def initialize(providers: Iterable[str], models: Iterable[str], routes: Iterable[tuple[str, str]] = ()) -> None:
    """Export every bounded series at 0 from the start, so rates, dashboards and alerts see them before traffic.

    ``routes`` are the configured (provider, upstream model) pairs: their token, cost and savings
    series exist from the start.
    """
    MODEL_LABELS.allow(models)
    for provider, model in routes:
        MODEL_LABELS.allow([model])
        COST_CENTS.labels(provider, model)
        CACHE_SAVINGS_CENTS.labels(provider, model)
        PROMPT_CACHE_SAVINGS_CENTS.labels(provider, model)
        for kind in ("prompt", "completion"):
            TOKENS.labels(provider, model, kind)
    for tier in CACHE_TIERS:
        CACHE_HITS.labels(tier)
        CACHE_MISSES.labels(tier)
    for tier in TIERS:
        for kind in RATE_LIMIT_KINDS:
            RATE_LIMITED.labels(tier, kind)
    for provider, model in routes:
        PROVIDER_DURATION.labels(provider, model)
    for provider in providers:
        CIRCUIT_BREAKER_STATE.labels(provider)
        RETRIES.labels(provider)
        TIME_TO_FIRST_TOKEN.labels(provider)
        for error_type in ERROR_TYPES:
            PROVIDER_ERRORS.labels(provider, error_type)
    for endpoint in ENDPOINTS:
        CLIENT_DISCONNECTS.labels(endpoint)
    IN_FLIGHT.inc(0)

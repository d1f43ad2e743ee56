"""Every setting of the gateway, declared once: variable, field, parser, default, bounds and doc together.

The body of ``Settings`` is the table, the way gunicorn declares its settings:
each field is one ``setting(...)`` naming its environment variable, its
default, the kind of value it takes (parser, bounds or allowed values), a
one-line doc, its section of docs/configuration.md, and whether it is a
secret. ``TABLE`` lists the entries; ``Settings.from_env``, the ``*_FILE``
rule, docs/configuration.md (``scripts/config-docs``) and the defaults of the
config files used elsewhere (app/config/snapshot.py, scripts/enroll.py) all
come from it. Checks that involve several settings (TLS pair, OTel batch and
queue, readable or writable files) are declared right after it.

``Settings.from_env(environ)`` is pure apart from reading secret files
(``NAME_FILE``) and checking that named files can be read or written, so tests
build settings from a plain dict. ``load_environ`` is the one read of the
process environment: it laid over a ``.env`` file (the real environment wins).
An invalid value raises ``ConfigError`` whose message is one line naming the
variable; gunicorn.conf.py and scripts/serve print it and exit 2.

The ``*_FILE`` rule (like the official postgres image): for every secret
``NAME``, ``NAME_FILE`` names a file whose content (stripped) is the value;
setting both is an error, and so is an unreadable or empty file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from dotenv import dotenv_values

from app.config.redis_url import parse_redis_url
from app.config.trusted_proxies import Network, parse_allow_list
from app.errors import CONNECT_FAILURE, RESET, RETRYABLE_WORDS

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = {"trace": "DEBUG", "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
               "error": "ERROR", "critical": "CRITICAL"}


# How a model's deployments are chosen: DEPLOYMENT_STRATEGY, and a model's `strategy` in MODELS_FILE
# (app.providers.routing checks that one against these; app.providers.balancer implements them).
Strategy = Literal["weighted", "least-busy", "latency"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

DEFAULT_RETRY_ON: frozenset[str | int] = frozenset({CONNECT_FAILURE, RESET, 429, 500, 502, 503, 504, 529})


def parse_retry_on(raw: str | Iterable[str]) -> frozenset[str | int]:
    """``"connect-failure,reset,429,5xx"`` as tokens; ValueError names the first bad one."""
    items = raw.split(",") if isinstance(raw, str) else raw
    out: set[str | int] = set()
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item in RETRYABLE_WORDS:
            out.add(item)
        elif item == "5xx":
            out.update(range(500, 600))
        elif item.isdigit() and 400 <= int(item) <= 599:
            out.add(int(item))
        else:
            raise ValueError(item)
    return frozenset(out)


class ConfigError(ValueError):
    """A setting or config file is invalid; the message is one line naming it."""


def load_environ(env_file: str | os.PathLike[str] = ".env",
                 environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment laid over ``.env`` (real environment wins)."""
    merged: dict[str, str] = {}
    path = Path(env_file)
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    # The one read of the process environment for settings: everything else is given this mapping.
    merged.update(os.environ if environ is None else environ)
    return merged


def read_secret(environ: Mapping[str, str], name: str) -> str | None:
    """A secret from ``NAME``, or from the file named by ``NAME_FILE`` (Docker/Kubernetes secrets).

    Both set is an error (one line naming both), as in the official postgres image; the file's content
    is stripped, and an unreadable or empty file is an error. Neither set: None.
    """
    value = environ.get(name, "").strip()
    file_name = environ.get(f"{name}_FILE", "").strip()
    if value and file_name:
        raise ConfigError(f"{name} and {name}_FILE are both set; set only one")
    if value:
        return value
    if not file_name:
        return None
    try:
        content = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {file_name!r} ({exc.strerror})") from None
    if not content:
        raise ConfigError(f"{name}_FILE: {file_name!r} is empty")
    return content


# --- Kinds of value: a parser (raw text -> value, ValueError when bad) and what it takes, for messages ---

@dataclass(frozen=True)
class Kind:
    parse: Callable[[str], Any]
    what: str  # completes "NAME must be ..." and the docs' "takes" column


def _text() -> Kind:
    return Kind(str, "a string")


def _integer(lo: int, hi: int) -> Kind:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError
        return value
    return Kind(parse, f"an integer from {lo} to {hi}")


def _seconds(lo: float = 0.0, hi: float = 1e9) -> Kind:
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo < value <= hi:
            raise ValueError
        return value
    return Kind(parse, f"a number of seconds above {lo:g} and at most {hi:g}")


def _fraction() -> Kind:
    def parse(raw: str) -> float:
        value = float(raw)
        if not 0.0 <= value <= 1.0:
            raise ValueError
        return value
    return Kind(parse, "a fraction from 0 to 1")


def _boolean() -> Kind:
    def parse(raw: str) -> bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError
    return Kind(parse, "true or false")


def _url(*schemes: str) -> Kind:
    def parse(raw: str) -> str:
        if not raw.startswith(tuple(f"{s}://" for s in schemes)) or len(raw.split("://", 1)[1]) == 0:
            raise ValueError
        return raw.rstrip("/")
    return Kind(parse, "a URL starting with " + " or ".join(f"{s}://" for s in schemes))


def _redis_url() -> Kind:
    def parse(raw: str) -> str:
        parse_redis_url(raw)
        return raw.rstrip("/") if "+" not in raw.split("://", 1)[0] else raw
    return Kind(parse, "a Redis URL: redis://, rediss://, unix://, redis+cluster://host:port[,host:port...] or "
                       "redis+sentinel://host:port[,host:port...]/service")


def _one_of(*choices: str) -> Kind:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError
        return raw
    return Kind(parse, " or ".join(choices) if len(choices) == 2 else "one of " + ", ".join(choices))


def _log_level() -> Kind:
    def parse(raw: str) -> str:
        # RUST_LOG may carry module filters ("info,hyper=warn"): the first bare level counts.
        word = next((p for p in raw.lower().split(",") if "=" not in p), "info").strip()
        return _LOG_LEVELS[word]  # KeyError is a LookupError: turned into ValueError below
    def checked(raw: str) -> str:
        try:
            return parse(raw)
        except KeyError:
            raise ValueError(raw) from None
    return Kind(checked, "one of " + ", ".join(sorted(_LOG_LEVELS)))


# --- The table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One entry of the table. ``field`` and ``default`` are filled in from the dataclass field."""

    env: str
    kind: Kind
    doc: str
    group: str
    secret: bool = False
    aliases: tuple[str, ...] = ()  # read, in order, when ``env`` is unset or empty
    shown: str | None = None  # the default as docs/configuration.md shows it, when not the value itself
    field: str = ""
    default: Any = None

    def read(self, environ: Mapping[str, str]) -> Any:
        """This setting's value in ``environ``: the default when unset or empty, else the parsed value."""
        name = self.env
        if self.secret:
            raw = read_secret(environ, name) or ""
        else:
            raw = ""
            for name in (self.env, *self.aliases):
                raw = environ.get(name, "").strip()
                if raw:
                    break
        if not raw:
            return self.default
        try:
            return self.kind.parse(raw)
        except (ValueError, TypeError):
            got = "a value not shown here (a secret)" if self.secret else repr(raw)
            raise ConfigError(f"{name} must be {self.kind.what}, got {got}") from None

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return str(self.default)


def setting(env: str, default: Any, kind: Kind, doc: str, *, group: str, secret: bool = False,
            aliases: tuple[str, ...] = (), shown: str | None = None) -> Any:
    """A dataclass field that is also an entry of the table (kept in the field's metadata)."""
    entry = Setting(env, kind, doc, group, secret, aliases, shown)
    return field(default=default, metadata={"setting": entry})


# Sections of docs/configuration.md, in order.
PROVIDERS = "Providers"
SERVER = "Server (gunicorn)"
CACHE = "Cache"
LIMITS = "Requests and upstream time limits"
RESILIENCE = "Retries and circuit breakers"
FILES = "Configuration files"
ACCESS = "Clients and rate limits"
TRACING = "Traces (OpenTelemetry)"
LOGS = "Logs and metrics"
GROUPS = (PROVIDERS, SERVER, CACHE, LIMITS, RESILIENCE, FILES, ACCESS, TRACING, LOGS)

_SECONDS = "a number of seconds"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every environment setting, validated; docs/configuration.md describes each (it is made from this)."""

    # Providers
    openai_api_key: str | None = setting(
        "OPENAI_API_KEY", None, _text(), "OpenAI key; a provider without a key is not routed to",
        group=PROVIDERS, secret=True)
    anthropic_api_key: str | None = setting(
        "ANTHROPIC_API_KEY", None, _text(), "Anthropic key; a provider without a key is not routed to",
        group=PROVIDERS, secret=True)
    openai_base_url: str = setting(
        "OPENAI_BASE_URL", "https://api.openai.com/v1", _url("http", "https"),
        "OpenAI endpoint (any OpenAI-compatible server works)", group=PROVIDERS)
    anthropic_base_url: str = setting(
        "ANTHROPIC_BASE_URL", "https://api.anthropic.com", _url("http", "https"), "Anthropic endpoint",
        group=PROVIDERS)
    anthropic_version: str = setting(
        "ANTHROPIC_VERSION", "2023-06-01", _text(),
        "`anthropic-version` header sent to Anthropic-format providers when the caller sends none",
        group=PROVIDERS)
    forward_openai_org_headers: bool = setting(
        "FORWARD_OPENAI_ORG_HEADERS", False, _boolean(),
        "pass a caller's `openai-organization` / `openai-project` headers on to OpenAI-format providers "
        "(off: the gateway's key decides the organization and project)", group=PROVIDERS)
    azure_api_version: str = setting(
        "AZURE_OPENAI_API_VERSION", "2024-10-21", _text(),
        "`api-version` sent to Azure OpenAI providers on the deployments endpoint (a provider's `api_version` in "
        "MODELS_FILE overrides it; the `v1` endpoint takes none)", group=PROVIDERS)

    # Server (gunicorn)
    host: str = setting("HOST", "0.0.0.0", _text(), "address the API and the metrics listen on", group=SERVER)
    port: int = setting("PORT", 8080, _integer(0, 65535), "HTTP (or HTTPS) API port", group=SERVER)
    metrics_port: int = setting(
        "METRICS_PORT", 9090, _integer(0, 65535), "Prometheus `/metrics` port, served by the gunicorn master",
        group=SERVER)
    web_concurrency: int = setting(
        "WEB_CONCURRENCY", os.cpu_count() or 1, _integer(1, 256),
        "worker processes; in Kubernetes set it to the pod's CPU limit "
        "([performance](performance.md#choosing-web_concurrency-and-gunicorn_threads))",
        group=SERVER, shown="the CPU count")
    # Measured (docs/performance.md#choosing-web_concurrency-and-gunicorn_threads): a stream holds a thread for
    # its whole life, so a 2-worker node holds 3,000 open streams only above 1,500 threads per worker: with 768,
    # 1,840 of a 3,000-stream level failed; with 2,048, none, at 139 MiB RSS per worker. Idle threads cost
    # nothing (created on demand) and requests/s did not change from 32 to 1024 threads.
    gunicorn_threads: int = setting(
        "GUNICORN_THREADS", 2048, _integer(1, 4096),
        "threads per worker: each open stream holds one; measured 139 MiB RSS per worker holding 1,500 "
        "streams ([performance](performance.md#choosing-web_concurrency-and-gunicorn_threads))", group=SERVER)
    # Keep-alive above common load balancer idle timeouts (AWS ALB 60 s, GCP 600 s is configurable),
    # so the balancer, not the gateway, closes idle connections and never hits a half-closed one.
    gunicorn_keepalive: int = setting(
        "GUNICORN_KEEPALIVE", 75, _integer(0, 3600),
        "seconds an idle client connection stays open; keep it above the load balancer's idle timeout",
        group=SERVER)
    gunicorn_timeout: int = setting(
        "GUNICORN_TIMEOUT", 60, _integer(0, 86400),
        "seconds a silent worker lives before gunicorn restarts it (a heartbeat, not a request limit; 0: never)",
        group=SERVER)
    gunicorn_graceful_timeout: int = setting(
        "GUNICORN_GRACEFUL_TIMEOUT", 30, _integer(0, 86400),
        "seconds in-flight requests and streams get to finish after SIGTERM or a reload "
        "([resilience](resilience.md#graceful-drain-sigterm))", group=SERVER)
    # gunicorn's default, 1000, left 232 kept-alive slots per worker beside 768 threads; past them every answer
    # was "Connection: close" (docs/deployment.md, "Connections and timeouts").
    gunicorn_worker_connections: int = setting(
        "GUNICORN_WORKER_CONNECTIONS", 4096, _integer(2, 1_000_000),
        "connections one worker holds: requests in progress plus idle kept-alive ones; must be above "
        "GUNICORN_THREADS, and is capped at start to what `ulimit -n` allows", group=SERVER)
    gunicorn_header_timeout: float = setting(
        "GUNICORN_HEADER_TIMEOUT", 5.0, _seconds(0, 300),
        "seconds a client has, from its first byte, to send a whole request head, and to finish a TLS handshake "
        "(slow request bodies and long streams are not affected)", group=SERVER)
    # Proxies whose X-Forwarded-For (and X-Forwarded-Proto, for gunicorn) is believed; None trusts all ("*").
    forwarded_allow_ips: tuple[Network, ...] | None = setting(
        "FORWARDED_ALLOW_IPS", parse_allow_list("127.0.0.1,::1"),
        Kind(parse_allow_list, "a comma-separated list of IP addresses or networks, or *"),
        "peers whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses, CIDR networks, or `*` "
        "([resilience](resilience.md#behind-a-load-balancer))", group=SERVER, shown="127.0.0.1,::1")
    tls_cert_path: str | None = setting(
        "TLS_CERT_PATH", None, _text(), "certificate (PEM); serve HTTPS when it and TLS_KEY_PATH are set",
        group=SERVER)
    tls_key_path: str | None = setting(
        "TLS_KEY_PATH", None, _text(), "private key (PEM) of TLS_CERT_PATH; both or neither", group=SERVER)

    # Cache
    enable_l2_cache: bool = setting(
        "ENABLE_L2_CACHE", True, _boolean(), "use Redis as the shared L2 cache", group=CACHE)
    redis_url: str = setting(
        "REDIS_URL", "redis://localhost:6379", _redis_url(),
        "Redis for the L2 cache, shared rate limits and stored responses; may hold a password; one Redis, a "
        "cluster or Sentinels ([scaling](scaling.md#redis-urls))", group=CACHE,
        secret=True)
    cache_redis_url: str | None = setting(
        "CACHE_REDIS_URL", None, _redis_url(),
        "a Redis for the L2 cache alone (give it `maxmemory` and an eviction policy), so a full cache never "
        "takes rate limits and budgets down with it; unset: the L2 cache uses REDIS_URL", group=CACHE,
        secret=True)
    redis_socket_timeout: float = setting(
        "REDIS_SOCKET_TIMEOUT", 0.05, _seconds(0, 60), "seconds a Redis command may take; no retries",
        group=CACHE)
    redis_connect_timeout: float = setting(
        "REDIS_CONNECT_TIMEOUT", 0.1, _seconds(0, 60), "seconds a Redis connect may take", group=CACHE)
    l1_cache_size: int = setting(
        "L1_CACHE_SIZE", 1000, _integer(0, 10_000_000), "entries in each worker's in-memory L1 cache (0: no L1)",
        group=CACHE)
    l1_max_bytes: int = setting(
        "L1_MAX_BYTES", 64 * 1024 * 1024, _integer(0, 2**40), "bytes of answers each worker's L1 may hold",
        group=CACHE)
    l1_ttl_seconds: int = setting(
        "L1_TTL_SECONDS", 300, _integer(0, 10**8), "seconds an answer lives in L1", group=CACHE)
    l2_ttl_seconds: int = setting(
        "L2_TTL_SECONDS", 3600, _integer(0, 10**8), "seconds an answer lives in L2 (Redis)", group=CACHE)
    cache_namespace: str | None = setting(
        "CACHE_NAMESPACE", None, _text(),
        "share cached answers among all clients under this name (unset: each client's answers are its own)",
        group=CACHE)
    cache_coalescing: bool = setting(
        "CACHE_COALESCING", True, _boolean(), "identical concurrent misses wait for one upstream call",
        group=CACHE)
    l2_write_behind: bool = setting(
        "L2_WRITE_BEHIND", True, _boolean(), "write L2 fills from a background thread, off the request path",
        group=CACHE)
    responses_ttl_seconds: int = setting(
        "RESPONSES_TTL_SECONDS", 30 * 24 * 3600, _integer(1, 10**9),
        "seconds a Responses API answer stored by the gateway (`store`, for `previous_response_id` and "
        "`GET /v1/responses/{id}`) lives in the L2 cache's Redis; its memory policy may drop it sooner",
        group=CACHE)

    # Requests and upstream time limits
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES", 10 * 1024 * 1024, _integer(1, 2**31), "request body limit (413 above it)",
        group=LIMITS)
    upstream_connect_timeout: float = setting(
        "UPSTREAM_CONNECT_TIMEOUT", 5.0, _seconds(), "seconds to connect to a provider", group=LIMITS)
    upstream_read_timeout: float = setting(
        "UPSTREAM_READ_TIMEOUT", 120.0, _seconds(), "seconds to wait for a provider's answer", group=LIMITS)
    request_timeout: float = setting(
        "REQUEST_TIMEOUT", 300.0, _seconds(), "seconds a whole request may take, retries and fallbacks included",
        group=LIMITS)
    stream_first_byte_timeout: float = setting(
        "STREAM_FIRST_BYTE_TIMEOUT", 60.0, _seconds(),
        "seconds from sending a streamed request to its first chunk", group=LIMITS)
    stream_idle_timeout: float = setting(
        "STREAM_IDLE_TIMEOUT", 60.0, _seconds(), "seconds between two chunks of a stream", group=LIMITS)
    default_max_tokens: int = setting(
        "DEFAULT_MAX_TOKENS", 4096, _integer(1, 10_000_000),
        "`max_tokens` sent to Anthropic-format providers when the caller sends none", group=LIMITS)

    # Retries and circuit breakers (docs/resilience.md): retries per target, then the breaker per provider.
    retry_attempts: int = setting(
        "RETRY_ATTEMPTS", 3, _integer(1, 10), "attempts per target, the first included", group=RESILIENCE)
    retry_on: frozenset[str | int] = setting(
        "RETRY_ON", DEFAULT_RETRY_ON,
        Kind(parse_retry_on, "a comma-separated list of connect-failure, reset, timeout, 5xx or statuses 400-599"),
        "failures worth another attempt", group=RESILIENCE, shown="connect-failure,reset,429,500,502,503,504,529")
    retry_backoff_base: float = setting(
        "RETRY_BACKOFF_BASE", 0.2, _seconds(0, 60),
        "base of the exponential backoff between attempts, in seconds (full jitter)", group=RESILIENCE)
    retry_backoff_max: float = setting(
        "RETRY_BACKOFF_MAX", 2.0, _seconds(0, 600), "longest backoff in seconds", group=RESILIENCE)
    retry_after_max: float = setting(
        "RETRY_AFTER_MAX", 5.0, _seconds(0, 3600),
        "longest provider `retry-after` honoured, in seconds; a longer one ends the retries", group=RESILIENCE)
    breaker_failure_threshold: int = setting(
        "BREAKER_FAILURE_THRESHOLD", 5, _integer(0, 10**6),
        "consecutive failures that open a provider's breaker (0: only the failure rate opens it)",
        group=RESILIENCE)
    breaker_failure_rate: float = setting(
        "BREAKER_FAILURE_RATE", 0.5, _fraction(), "share of failed attempts in the window that opens the breaker",
        group=RESILIENCE)
    breaker_min_requests: int = setting(
        "BREAKER_MIN_REQUESTS", 20, _integer(1, 10**6), "attempts in the window before the failure rate counts",
        group=RESILIENCE)
    breaker_window: float = setting(
        "BREAKER_WINDOW", 60.0, _seconds(0, 86400), "seconds of attempts the failure rate looks at",
        group=RESILIENCE)
    breaker_cooldown: float = setting(
        "BREAKER_COOLDOWN", 30.0, _seconds(0, 86400), "seconds an open breaker waits before a trial request",
        group=RESILIENCE)
    deployment_strategy: str = setting(
        "DEPLOYMENT_STRATEGY", "weighted", _one_of(*STRATEGIES),
        "how a model's deployments are chosen, unless its `strategy` in MODELS_FILE says otherwise "
        "([providers](providers.md#deployments))", group=RESILIENCE)
    deployment_cooldown: float = setting(
        "DEPLOYMENT_COOLDOWN", 10.0, _seconds(0, 3600),
        "seconds a deployment that answered 429 or 5xx (or could not be reached) is skipped, when it sent no "
        "`retry-after`", group=RESILIENCE)

    # Configuration files (YAML, described in docs/api.md, docs/access.md and docs/observability.md)
    models_file: str = setting(
        "MODELS_FILE", "config/models.yaml", _text(),
        "model aliases, provider per model, fallbacks, extra OpenAI-compatible providers", group=FILES)
    pricing_file: str = setting(
        "PRICING_FILE", "config/pricing.yaml", _text(), "price per million input/output tokens per model",
        group=FILES)
    rate_limits_file: str = setting(
        "RATE_LIMITS_FILE", "config/rate-limits.yaml", _text(), "rate limits per tier and global", group=FILES)
    clients_file: str = setting(
        "CLIENTS_FILE", "config/clients.yaml", _text(), "client keys (SHA-256 digests) and tiers", group=FILES)

    # Clients and rate limits
    anonymous_tier: str | None = setting(
        "ANONYMOUS_TIER", None, _text(), "tier of the `anonymous` client when no clients are configured",
        group=ACCESS, shown="the rate limit file's most generous tier")
    rate_limit_replicas: int = setting(
        "RATE_LIMIT_REPLICAS", 1, _integer(1, 10_000),
        "gateway replicas sharing one Redis: sizes each worker's share of a limit while Redis is down",
        group=ACCESS)
    rate_limit_without_redis: str = setting(
        "RATE_LIMIT_WITHOUT_REDIS", "local", _one_of("local", "refuse"),
        "while Redis is unreachable or failing over: `local` limits each worker at its share of every limit "
        "(fail-open), `refuse` answers 503 (fail-closed) ([scaling](scaling.md#during-a-redis-fault))",
        group=ACCESS)
    rate_limit_lease_ms: int = setting(
        "RATE_LIMIT_LEASE_MS", 50, _integer(0, 1000),
        "milliseconds of a limit a worker admits locally per Redis check (0: every request checked in Redis)",
        group=ACCESS)

    # Traces (OpenTelemetry)
    enable_tracing: bool = setting("ENABLE_TRACING", True, _boolean(), "OpenTelemetry spans", group=TRACING)
    otlp_endpoint: str = setting(
        "OTLP_ENDPOINT", "http://jaeger:4317", _url("http", "https"),
        "OTLP collector; unreachable means a warning, never slower requests", group=TRACING)
    otlp_protocol: str = setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", _one_of("grpc", "http/protobuf"), "OTLP wire protocol",
        group=TRACING)
    otel_service_name: str = setting(
        "OTEL_SERVICE_NAME", "llm-edge-agent", _text(), "`service.name` of the spans", group=TRACING)
    otel_queue_size: int = setting(
        "OTEL_BSP_MAX_QUEUE_SIZE", 2048, _integer(1, 10_000_000),
        "spans queued per worker for export; when full, new spans are dropped", group=TRACING)
    otel_batch_size: int = setting(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, _integer(1, 10_000_000),
        "spans per export; at most OTEL_BSP_MAX_QUEUE_SIZE", group=TRACING,
        shown="512 (at most the queue size)")
    otel_schedule_delay_ms: int = setting(
        "OTEL_BSP_SCHEDULE_DELAY", 5000, _integer(1, 3_600_000), "milliseconds between two exports",
        group=TRACING)
    otel_export_timeout: float = setting(
        "OTEL_EXPORTER_OTLP_TIMEOUT", 10.0, _seconds(0, 600), "seconds an export may take", group=TRACING)

    # Logs and metrics (docs/observability.md#logs)
    log_level: str = setting(
        "LOG_LEVEL", "INFO", _log_level(),
        "log level (alias RUST_LOG, whose first bare level counts: `info,hyper=warn`); LOG_LEVEL wins",
        group=LOGS, aliases=("RUST_LOG",), shown="info")
    log_file: str | None = setting(
        "LOG_FILE", None, _text(), "write logs to this file (reopened on SIGUSR1) instead of stderr", group=LOGS)
    log_prompts: bool = setting(
        "LOG_PROMPTS", False, _boolean(), "log prompts and answers at debug level (they may hold personal data)",
        group=LOGS)
    prometheus_multiproc_dir: str | None = setting(
        "PROMETHEUS_MULTIPROC_DIR", None, _text(),
        "folder in which the master makes its private metrics folder (app/observability/multiproc.py)",
        group=LOGS, shown="the temp folder")
    patches_enabled: bool = setting(
        "LLM_EDGE_PATCHES", True, _boolean(),
        "false turns off every patch of a library's internals (app/patches), to rule them out when debugging",
        group=LOGS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values = {entry.field: entry.read(environ) for entry in TABLE}
        _check_together(values, environ)
        return cls(**values)

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to log: secrets replaced by whether they are set."""
        return {e.field: (getattr(self, e.field) is not None) if e.secret else getattr(self, e.field)
                for e in TABLE}


TABLE: tuple[Setting, ...] = tuple(
    Setting(**{**f.metadata["setting"].__dict__, "field": f.name,
               "default": None if f.default is MISSING else f.default})
    for f in fields(Settings))
BY_ENV: dict[str, Setting] = {entry.env: entry for entry in TABLE}
SECRETS: tuple[str, ...] = tuple(entry.env for entry in TABLE if entry.secret)


def _check_together(values: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Checks of several settings at once, and of the files they name."""
    for name, path in (("TLS_CERT_PATH", values["tls_cert_path"]), ("TLS_KEY_PATH", values["tls_key_path"])):
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{name}: cannot read {path!r}")
    queue = values["otel_queue_size"]
    if not environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip():
        values["otel_batch_size"] = min(values["otel_batch_size"], queue)  # the default fits a small queue
    if values["otel_batch_size"] > queue:
        raise ConfigError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({values['otel_batch_size']}) must not exceed "
                          f"OTEL_BSP_MAX_QUEUE_SIZE ({queue})")
    log_file = values["log_file"]
    if log_file and not os.access(os.path.dirname(os.path.abspath(log_file)), os.W_OK):
        raise ConfigError(f"LOG_FILE: cannot write in the folder of {log_file!r}")
    if bool(values["tls_cert_path"]) != bool(values["tls_key_path"]):
        raise ConfigError("TLS_CERT_PATH and TLS_KEY_PATH must be set together")
    if values["gunicorn_worker_connections"] <= values["gunicorn_threads"]:
        raise ConfigError(f"GUNICORN_WORKER_CONNECTIONS ({values['gunicorn_worker_connections']}) must be above "
                          f"GUNICORN_THREADS ({values['gunicorn_threads']}): the difference is what a worker "
                          "keeps alive between requests")


def is_configured(environ: Mapping[str, str], env: str) -> bool:
    """Whether the variable is set (not left to its default): some defaults are only right in one setting."""
    return bool(environ.get(env, "").strip())


def read_setting(environ: Mapping[str, str], env: str) -> Any:
    """One setting's value, by its variable name, without the others (scripts that need one path)."""
    return BY_ENV[env].read(environ)


def config_file_defaults() -> dict[str, str]:
    """The YAML configuration files' variables and their default paths."""
    return {entry.env: entry.default for entry in TABLE if entry.group == FILES}


def secrets_from_files(environ: Mapping[str, str]) -> list[str]:
    """The secrets of the table given as ``NAME_FILE`` (for the start-up log; never their values)."""
    return [name for name in SECRETS if environ.get(f"{name}_FILE", "").strip()]

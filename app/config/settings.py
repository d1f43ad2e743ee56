"""Settings read once from the environment into one immutable object.

``Settings.from_env(environ)`` is pure: it never reads files or the process
environment itself, so tests build settings from a plain dict. ``load_environ``
is the one impure step: the process environment over a ``.env`` file (the
real environment wins). An invalid value raises ``ConfigError`` whose message
is one line naming the variable; gunicorn.conf.py prints it and exits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from app.config.trusted_proxies import Network, parse_allow_list
from app.errors import CONNECT_FAILURE, RESET, RETRYABLE_WORDS

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = {"trace": "DEBUG", "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
               "error": "ERROR", "critical": "CRITICAL"}


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
    merged.update(os.environ if environ is None else environ)
    return merged


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker/K8s secrets)."""
    value = environ.get(name, "").strip()
    if value:
        return value
    file_name = environ.get(f"{name}_FILE", "").strip()
    if not file_name:
        return None
    try:
        return Path(file_name).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ConfigError(f"{name}_FILE: cannot read {file_name!r} ({exc.strerror})") from None


class _Reader:
    """Typed accessors that turn a bad value into a one-line ConfigError."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ

    def _get(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError):
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None

    def str(self, name: str, default: str) -> str:
        return self._get(name, default, str, "a string")

    def int(self, name: str, default: int, lo: int = 0, hi: int = 2**31) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not lo <= value <= hi:
                raise ValueError
            return value
        return self._get(name, default, parse, f"an integer from {lo} to {hi}")

    def float(self, name: str, default: float, lo: float = 0.0, hi: float = 1e9) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not lo < value <= hi:
                raise ValueError
            return value
        return self._get(name, default, parse, f"a number of seconds above {lo:g} and at most {hi:g}")

    def fraction(self, name: str, default: float) -> float:
        def parse(raw: str) -> float:
            value = float(raw)
            if not 0.0 <= value <= 1.0:
                raise ValueError
            return value
        return self._get(name, default, parse, "a fraction from 0 to 1")

    def bool(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        return self._get(name, default, parse, "true or false")

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        def parse(raw: str) -> str:
            if not raw.startswith(tuple(f"{s}://" for s in schemes)) or len(raw.split("://", 1)[1]) == 0:
                raise ValueError
            return raw.rstrip("/")
        return self._get(name, default, parse, "a URL starting with " + " or ".join(f"{s}://" for s in schemes))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every environment setting of INTERFACE.md, validated. See README for each."""

    openai_api_key: str | None = None
    anthropic_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    host: str = "0.0.0.0"
    port: int = 8080
    metrics_port: int = 9090
    web_concurrency: int = os.cpu_count() or 1
    # Measured (README, "Performance"): a stream holds a thread for its whole life, and gthread
    # spreads connections unevenly over workers, so 2 workers x 512 threads held 1000 slow streams
    # but not 1200, while x 768 held 1200 at 66 MiB RSS per worker. Idle threads cost nothing
    # (created on demand) and requests/s did not change from 32 to 1024 threads.
    gunicorn_threads: int = 768
    enable_l2_cache: bool = True
    redis_url: str = "redis://localhost:6379"
    redis_socket_timeout: float = 0.05
    redis_connect_timeout: float = 0.1
    l1_cache_size: int = 1000
    l1_max_bytes: int = 64 * 1024 * 1024
    l1_ttl_seconds: int = 300
    l2_ttl_seconds: int = 3600
    cache_namespace: str | None = None
    cache_coalescing: bool = True
    l2_write_behind: bool = True
    max_request_bytes: int = 10 * 1024 * 1024
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 120.0
    request_timeout: float = 300.0
    stream_first_byte_timeout: float = 60.0
    stream_idle_timeout: float = 60.0
    default_max_tokens: int = 4096
    # Resilience (README, "Resilience"): retries per target, then the breaker per provider.
    retry_attempts: int = 3
    retry_on: frozenset[str | int] = DEFAULT_RETRY_ON
    retry_backoff_base: float = 0.2
    retry_backoff_max: float = 2.0
    retry_after_max: float = 5.0
    breaker_failure_threshold: int = 5
    breaker_failure_rate: float = 0.5
    breaker_min_requests: int = 20
    breaker_window: float = 60.0
    breaker_cooldown: float = 30.0
    # Proxies whose X-Forwarded-For (and X-Forwarded-Proto, for gunicorn) is believed; None trusts all ("*").
    forwarded_allow_ips: tuple[Network, ...] | None = parse_allow_list("127.0.0.1,::1")
    models_file: str = "config/models.yaml"
    pricing_file: str = "config/pricing.yaml"
    rate_limits_file: str = "config/rate-limits.yaml"
    clients_file: str = "config/clients.yaml"
    anonymous_tier: str | None = None  # None: the rate limit file's most generous tier
    rate_limit_replicas: int = 1
    rate_limit_lease_ms: int = 50  # 0: every request checked in Redis
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    enable_tracing: bool = True
    otlp_endpoint: str = "http://jaeger:4317"
    otlp_protocol: str = "grpc"
    otel_queue_size: int = 2048
    otel_batch_size: int = 512
    otel_schedule_delay_ms: int = 5000
    otel_export_timeout: float = 10.0
    log_level: str = "INFO"
    log_file: str | None = None
    log_flush_ms: int = 0  # 0: every log line written at once; batching measured no faster (README, Logs)
    log_prompts: bool = False
    patches_enabled: bool = True  # LLM_EDGE_PATCHES: the library patches of app/patches/

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        r = _Reader(environ)
        d = cls()  # defaults
        log_raw = environ.get("LOG_LEVEL") or environ.get("RUST_LOG") or "info"
        # RUST_LOG may carry module filters ("info,hyper=warn"): the first bare level counts.
        log_word = next((p for p in log_raw.lower().split(",") if "=" not in p), "info").strip()
        if log_word not in _LOG_LEVELS:
            name = "LOG_LEVEL" if environ.get("LOG_LEVEL") else "RUST_LOG"
            raise ConfigError(f"{name} must be one of {', '.join(sorted(_LOG_LEVELS))}, got {log_raw!r}")
        protocol = r.str("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        if protocol not in ("grpc", "http/protobuf"):
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf, got {protocol!r}")
        tls_cert = environ.get("TLS_CERT_PATH") or None
        tls_key = environ.get("TLS_KEY_PATH") or None
        for name, path in (("TLS_CERT_PATH", tls_cert), ("TLS_KEY_PATH", tls_key)):
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"{name}: cannot read {path!r}")
        queue_size = r.int("OTEL_BSP_MAX_QUEUE_SIZE", d.otel_queue_size, 1, 10_000_000)
        batch_size = r.int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", min(d.otel_batch_size, queue_size), 1, 10_000_000)
        if batch_size > queue_size:
            raise ConfigError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({batch_size}) must not exceed "
                              f"OTEL_BSP_MAX_QUEUE_SIZE ({queue_size})")
        log_file = environ.get("LOG_FILE") or None
        if log_file and not os.access(os.path.dirname(os.path.abspath(log_file)), os.W_OK):
            raise ConfigError(f"LOG_FILE: cannot write in the folder of {log_file!r}")
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError("TLS_CERT_PATH and TLS_KEY_PATH must be set together")
        settings = cls(
            openai_api_key=_secret(environ, "OPENAI_API_KEY"),
            anthropic_api_key=_secret(environ, "ANTHROPIC_API_KEY"),
            openai_base_url=r.url("OPENAI_BASE_URL", d.openai_base_url, ("http", "https")),
            anthropic_base_url=r.url("ANTHROPIC_BASE_URL", d.anthropic_base_url, ("http", "https")),
            anthropic_version=r.str("ANTHROPIC_VERSION", d.anthropic_version),
            host=r.str("HOST", d.host),
            port=r.int("PORT", d.port, 0, 65535),
            metrics_port=r.int("METRICS_PORT", d.metrics_port, 0, 65535),
            web_concurrency=r.int("WEB_CONCURRENCY", d.web_concurrency, 1, 256),
            gunicorn_threads=r.int("GUNICORN_THREADS", d.gunicorn_threads, 1, 4096),
            enable_l2_cache=r.bool("ENABLE_L2_CACHE", d.enable_l2_cache),
            redis_url=r.url("REDIS_URL", d.redis_url, ("redis", "rediss", "unix")),
            redis_socket_timeout=r.float("REDIS_SOCKET_TIMEOUT", d.redis_socket_timeout, 0, 60),
            redis_connect_timeout=r.float("REDIS_CONNECT_TIMEOUT", d.redis_connect_timeout, 0, 60),
            l1_cache_size=r.int("L1_CACHE_SIZE", d.l1_cache_size, 0, 10_000_000),
            l1_max_bytes=r.int("L1_MAX_BYTES", d.l1_max_bytes, 0, 2**40),
            l1_ttl_seconds=r.int("L1_TTL_SECONDS", d.l1_ttl_seconds, 0, 10**8),
            l2_ttl_seconds=r.int("L2_TTL_SECONDS", d.l2_ttl_seconds, 0, 10**8),
            cache_namespace=environ.get("CACHE_NAMESPACE") or None,
            cache_coalescing=r.bool("CACHE_COALESCING", d.cache_coalescing),
            l2_write_behind=r.bool("L2_WRITE_BEHIND", d.l2_write_behind),
            max_request_bytes=r.int("MAX_REQUEST_BYTES", d.max_request_bytes, 1, 2**31),
            upstream_connect_timeout=r.float("UPSTREAM_CONNECT_TIMEOUT", d.upstream_connect_timeout),
            upstream_read_timeout=r.float("UPSTREAM_READ_TIMEOUT", d.upstream_read_timeout),
            request_timeout=r.float("REQUEST_TIMEOUT", d.request_timeout),
            stream_first_byte_timeout=r.float("STREAM_FIRST_BYTE_TIMEOUT", d.stream_first_byte_timeout),
            stream_idle_timeout=r.float("STREAM_IDLE_TIMEOUT", d.stream_idle_timeout),
            default_max_tokens=r.int("DEFAULT_MAX_TOKENS", d.default_max_tokens, 1, 10_000_000),
            retry_attempts=r.int("RETRY_ATTEMPTS", d.retry_attempts, 1, 10),
            retry_on=r._get("RETRY_ON", d.retry_on, parse_retry_on,
                            "a comma-separated list of connect-failure, reset, timeout, 5xx or statuses 400-599"),
            retry_backoff_base=r.float("RETRY_BACKOFF_BASE", d.retry_backoff_base, 0, 60),
            retry_backoff_max=r.float("RETRY_BACKOFF_MAX", d.retry_backoff_max, 0, 600),
            retry_after_max=r.float("RETRY_AFTER_MAX", d.retry_after_max, 0, 3600),
            breaker_failure_threshold=r.int("BREAKER_FAILURE_THRESHOLD", d.breaker_failure_threshold, 0, 10**6),
            breaker_failure_rate=r.fraction("BREAKER_FAILURE_RATE", d.breaker_failure_rate),
            breaker_min_requests=r.int("BREAKER_MIN_REQUESTS", d.breaker_min_requests, 1, 10**6),
            breaker_window=r.float("BREAKER_WINDOW", d.breaker_window, 0, 86400),
            breaker_cooldown=r.float("BREAKER_COOLDOWN", d.breaker_cooldown, 0, 86400),
            forwarded_allow_ips=r._get("FORWARDED_ALLOW_IPS", d.forwarded_allow_ips, parse_allow_list,
                                       "a comma-separated list of IP addresses or networks, or *"),
            models_file=r.str("MODELS_FILE", d.models_file),
            pricing_file=r.str("PRICING_FILE", d.pricing_file),
            rate_limits_file=r.str("RATE_LIMITS_FILE", d.rate_limits_file),
            clients_file=r.str("CLIENTS_FILE", d.clients_file),
            anonymous_tier=environ.get("ANONYMOUS_TIER") or None,
            rate_limit_replicas=r.int("RATE_LIMIT_REPLICAS", d.rate_limit_replicas, 1, 10_000),
            rate_limit_lease_ms=r.int("RATE_LIMIT_LEASE_MS", d.rate_limit_lease_ms, 0, 1000),
            tls_cert_path=tls_cert,
            tls_key_path=tls_key,
            enable_tracing=r.bool("ENABLE_TRACING", d.enable_tracing),
            otlp_endpoint=r.url("OTLP_ENDPOINT", d.otlp_endpoint, ("http", "https")),
            otlp_protocol=protocol,
            otel_queue_size=queue_size,
            otel_batch_size=batch_size,
            otel_schedule_delay_ms=r.int("OTEL_BSP_SCHEDULE_DELAY", d.otel_schedule_delay_ms, 1, 3_600_000),
            otel_export_timeout=r.float("OTEL_EXPORTER_OTLP_TIMEOUT", d.otel_export_timeout, 0, 600),
            log_level=_LOG_LEVELS[log_word],
            log_file=log_file,
            log_flush_ms=r.int("LOG_FLUSH_MS", d.log_flush_ms, 0, 10_000),
            log_prompts=r.bool("LOG_PROMPTS", d.log_prompts),
            patches_enabled=r.bool("LLM_EDGE_PATCHES", d.patches_enabled),
        )
        return settings

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to log: keys replaced by whether they are set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = (value is not None) if f.name.endswith("api_key") else value
        return out

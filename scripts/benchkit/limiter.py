"""What access control costs per request: key lookup, the Redis Lua check, leased batches, the local fallback.

Without --redis-url it starts a private redis-server on a free port (loopback, no persistence), so the
Redis figure is one local round trip plus the script. Every path is timed call by call; the table shows
the median, the 99th percentile and the single-thread rate, then the Redis check again from several
threads at once (the gthread worker's situation).

Run: ``.venv/bin/python -m benchkit.limiter [--redis-url redis://host:port] [-n 20000] [--threads 8]``
from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.config.settings import Settings
from app.limits.clients import parse_clients, presented_key
from app.limits.local import LocalLimiter
from app.limits.policy import parse_policy
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard, make_redis
from benchkit import micro
from benchkit.procs import RedisServer

# Limits no benchmark reaches, so every check is admitted and writes (the expensive case).
POLICY = parse_policy({"rate_limiting": {"global": {"requests_per_second": 1e9}, "per_client": {
    "tier_bench": {"requests_per_second": 1e9, "tokens_per_minute": 10**12}}}})
KEY = "sk-edge-bench-0123456789abcdef0123456789abcdef"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Each call's seconds, after a warm-up (connections, script cache, branch predictors)."""
    return micro.samples(fn, n, warmup=min(1000, n // 10))


def threaded(fn: Callable[[], object], n: int, threads: int) -> tuple[float, list[float]]:
    """Calls per second over all threads, and every call's time."""
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        flat = [x for chunk in pool.map(lambda _: micro.samples(fn, n // threads), range(threads)) for x in chunk]
        elapsed = time.perf_counter() - started
    return len(flat) / elapsed, flat


def row(name: str, samples: list[float], rate: float | None = None) -> tuple[str, str, str, str]:
    q = statistics.quantiles(samples, n=100)
    rate = rate if rate is not None else len(samples) / sum(samples)
    return name, f"{statistics.median(samples) * 1e6:.1f}", f"{q[98] * 1e6:.1f}", f"{rate:,.0f}"


def rows(url: str, n: int, threads: int) -> list[tuple[str, str, str, str]]:
    clients = parse_clients({"clients": [{"id": "bench", "tier": "bench",
                                          "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]},
                            POLICY.tiers, "bench")
    tier = POLICY.tier("bench")
    settings = Settings.from_env({"REDIS_URL": url, "GUNICORN_THREADS": str(threads)})
    limiter = RateLimiter(POLICY, RedisGuard(make_redis(settings)), local_parts=4)
    limiter.load_scripts()
    leasing = RateLimiter(POLICY, RedisGuard(make_redis(settings)), local_parts=4, lease_window=0.05)
    leasing.load_scripts()
    local = LocalLimiter(POLICY, 4)
    header = f"Bearer {KEY}"
    paths: list[tuple[str, Callable[[], object]]] = [
        ("client key: header parse + SHA-256 + lookup", lambda: clients.find(presented_key(header, None))),
        ("floor: one Redis PING round trip", limiter.guard.client.ping),
        ("rate limit, Redis: one EVALSHA (client + tokens + global)", lambda: limiter.check("bench", tier)),
        ("rate limit, leased batches (RATE_LIMIT_LEASE_MS=50)", lambda: leasing.check("bench-leased", tier)),
        ("token count after an answer, Redis: one EVALSHA", lambda: limiter.debit_tokens("bench", tier, 100)),
        ("rate limit, local fallback (Redis away)", lambda: local.check("bench", "bench")),
    ]
    table = [row(name, timed(fn, n)) for name, fn in paths]
    rate, samples = threaded(lambda: limiter.check("bench", tier), n, threads)
    return [*table, row(f"rate limit, Redis, {threads} threads at once", samples, rate)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    parser.add_argument("-n", type=int, default=20000, help="calls per path")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    redis = None if args.redis_url else RedisServer().start()
    url = args.redis_url or redis.url
    try:
        table = rows(url, args.n, args.threads)
    finally:
        if redis is not None:
            redis.close()
    print(f"limiter cost per request (Redis {url.split('@')[-1]}, n={args.n}, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    print(micro.table(["path", "median µs", "p99 µs", "calls/s (one thread)"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

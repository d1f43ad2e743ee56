#!/usr/bin/env python3
"""What access control costs per request: key lookup, the Redis Lua check, the local fallback.

    .venv/bin/python scripts/bench_limiter.py [--redis-url redis://host:port] [-n 20000] [--threads 8]

Without --redis-url it starts a private redis-server on a free port (loopback,
no persistence), so the Redis figure is one local round trip plus the script.
Every path is timed call by call; the table shows the median, the 99th
percentile and the single-thread rate, then the Redis check again from
several threads at once (the gthread worker's situation).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config.settings import Settings
from app.limits.clients import parse_clients, presented_key
from app.limits.local import LocalLimiter
from app.limits.policy import parse_policy
from app.limits.ratelimit import RateLimiter
from app.resilience.redis_guard import RedisGuard, make_redis

# Limits no benchmark reaches, so every check is admitted and writes (the expensive case).
POLICY = parse_policy({"rate_limiting": {"global": {"requests_per_second": 1e9}, "per_client": {
    "tier_bench": {"requests_per_second": 1e9, "tokens_per_minute": 10**12}}}})
KEY = "sk-edge-bench-0123456789abcdef0123456789abcdef"


def start_redis() -> tuple[str, Callable[[], None]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.02)

    def stop() -> None:
        proc.kill()
        proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)

    return f"redis://127.0.0.1:{port}", stop


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(1000, n // 10)):  # warm up: connections, script cache, branch predictors
        fn()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def threaded(fn: Callable[[], object], n: int, threads: int) -> tuple[float, list[float]]:
    """Calls per second over all threads, and every call's time."""

    def run(_: int) -> list[float]:
        clock, out = time.perf_counter, []
        for _ in range(n // threads):
            t = clock()
            fn()
            out.append(clock() - t)
        return out

    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        flat = [x for chunk in pool.map(run, range(threads)) for x in chunk]
        elapsed = time.perf_counter() - started
    return len(flat) / elapsed, flat


def row(name: str, samples: list[float], rate: float | None = None) -> str:
    q = statistics.quantiles(samples, n=100)
    rate = rate if rate is not None else len(samples) / sum(samples)
    return f"| {name} | {statistics.median(samples) * 1e6:.1f} | {q[98] * 1e6:.1f} | {rate:,.0f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    parser.add_argument("-n", type=int, default=20000, help="calls per path")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    stop = None
    url = args.redis_url
    if url is None:
        url, stop = start_redis()
    try:
        clients = parse_clients({"clients": [{"id": "bench", "tier": "bench",
                                              "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]},
                                POLICY.tiers, "bench")
        tier = POLICY.tier("bench")
        settings = Settings.from_env({"REDIS_URL": url, "GUNICORN_THREADS": str(args.threads)})
        limiter = RateLimiter(POLICY, RedisGuard(make_redis(settings)), local_parts=4)
        limiter.load_scripts()
        local = LocalLimiter(POLICY, 4)
        header = f"Bearer {KEY}"

        lines = ["| path | median µs | p99 µs | calls/s (one thread) |", "|---|---:|---:|---:|"]
        lines.append(row("client key: header parse + SHA-256 + lookup",
                         timed(lambda: clients.find(presented_key(header, None)), args.n)))
        ping = limiter.guard.client.ping
        lines.append(row("floor: one Redis PING round trip", timed(ping, args.n)))
        lines.append(row("rate limit, Redis: one EVALSHA (client + tokens + global)",
                         timed(lambda: limiter.check("bench", tier), args.n)))
        leasing = RateLimiter(POLICY, RedisGuard(make_redis(settings)), local_parts=4, lease_window=0.05)
        leasing.load_scripts()
        lines.append(row("rate limit, leased batches (RATE_LIMIT_LEASE_MS=50)",
                         timed(lambda: leasing.check("bench-leased", tier), args.n)))
        lines.append(row("token count after an answer, Redis: one EVALSHA",
                         timed(lambda: limiter.debit_tokens("bench", tier, 100), args.n)))
        lines.append(row("rate limit, local fallback (Redis away)", timed(lambda: local.check("bench", "bench"),
                                                                           args.n)))
        rate, samples = threaded(lambda: limiter.check("bench", tier), args.n, args.threads)
        lines.append(row(f"rate limit, Redis, {args.threads} threads at once", samples, rate))
        print(f"limiter cost per request (Redis {url.split('@')[-1]}, n={args.n}, Python "
              f"{sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
        print("\n".join(lines))
    finally:
        if stop:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

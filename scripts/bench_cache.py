#!/usr/bin/env python3
"""Cache benchmark: L1 hit, L2 hit, miss and bypass, end to end and inside the cache stage.

End to end: starts the provider emulator (its own process), a private
redis-server and two gunicorn gateways sharing it (one normal, one with L1
off so every lookup is an L2 hit), drives each with keep-alive clients and
prints requests/s and latency percentiles per case. Each case checks the
``x-llm-edge-cache`` header of every answer, so a wrong figure cannot pass
for a right one. Client, gateway and emulator share the machine: compare the
rows with each other, not with other machines.

In process: the cost of the cache stage alone per request (key, L1 hit, L2
hit over a real Redis round trip, miss plus fill), without HTTP around it.

    .venv/bin/python scripts/bench_cache.py [--requests 2000] [--clients 8] [--upstream-latency 0]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import urllib3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cache.control import CacheControl  # noqa: E402
from app.cache.keys import cache_key  # noqa: E402
from app.cache.l1 import L1Cache  # noqa: E402
from app.cache.l2 import L2Cache  # noqa: E402
from app.cache.stage import CacheStage  # noqa: E402
from app.cache.tiered import TieredCache  # noqa: E402
from app.config.settings import Settings  # noqa: E402
from app.context import RequestContext  # noqa: E402
from app.formats import openai as openai_codec  # noqa: E402
from app.providers.routing import Provider, Target  # noqa: E402
from app.resilience.redis_guard import RedisGuard, make_redis  # noqa: E402
from tests.support.processes import GatewayProcess, RedisServer, free_port, wait_until  # noqa: E402

OPENAI_KEY = "sk-bench-openai"
ANTHROPIC_KEY = "sk-ant-bench-anthropic"


def start_emulator(latency: float) -> tuple[subprocess.Popen, str]:
    """The emulator in its own process, so it does not share the clients' GIL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "emulator.py"), "--port", str(port),
                             "--no-record", "--latency", str(latency), "--openai-key", OPENAI_KEY,
                             "--anthropic-key", ANTHROPIC_KEY], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib3.request("GET", url + "/v1/models", headers={
        "authorization": f"Bearer {OPENAI_KEY}"}).status == 200, what="emulator")
    return proc, url


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - started) / n * 1e6


def stage_costs(redis_url: str, n: int = 20000) -> list[tuple[str, float]]:
    """Microseconds per request spent in the cache stage, for a typical ~1 KB chat request."""
    prompt = "Summarise the following paragraph in one sentence. " + "lorem ipsum dolor sit amet " * 35
    request = openai_codec.parse_request(orjson.loads(body(prompt)))
    target = Target(Provider("openai", "openai", "http://x", "k", None, True), "gpt-4o-mini")
    answer = openai_codec.parse_response({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "A short summary sentence. " * 10}}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 60, "total_tokens": 260}})
    guard = RedisGuard(make_redis(Settings.from_env({"REDIS_URL": redis_url})))
    normal = CacheControl()
    ctx = RequestContext(request_id="r", endpoint="/v1/chat/completions", dialect="openai")
    deadline = time.monotonic() + 3600
    l1_stage = CacheStage(TieredCache(L1Cache(1000, 64 << 20, 300), None))
    l2_stage = CacheStage(TieredCache(L1Cache(0, 0, 0), L2Cache(guard, 3600)))
    for stage in (l1_stage, l2_stage):
        stage.begin(ctx, request, target, normal, deadline)[1].store(target, answer)
    fill_stage = CacheStage(TieredCache(L1Cache(1000, 64 << 20, 300), L2Cache(guard, 60)))
    variants = [openai_codec.parse_request(orjson.loads(body(f"{prompt} {i}"))) for i in range(n // 10)]

    def miss_and_fill(i: int) -> None:
        fill_stage.begin(ctx, variants[i], target, normal, deadline)[1].store(target, answer)

    return [
        ("key (hash of the canonical request)", per_call_us(lambda i: cache_key(request, target, "client:a"), n)),
        ("L1 hit", per_call_us(lambda i: l1_stage.begin(ctx, request, target, normal, deadline), n)),
        ("L2 hit (one Redis round trip, decode)",
         per_call_us(lambda i: l2_stage.begin(ctx, request, target, normal, deadline), n // 10)),
        ("miss + fill (L1, L2 GET and SET)", per_call_us(miss_and_fill, n // 10)),
    ]


def body(text: str) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 50,
                         "messages": [{"role": "user", "content": text}]})


def run_case(url: str, make_body: Callable[[int], bytes], expect: str | None, total: int, clients: int,
             headers: dict[str, str] | None = None) -> tuple[float, list[float]]:
    """``total`` requests from ``clients`` threads; returns requests/s and every latency in seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[str] = []
    send_headers = {"content-type": "application/json", **(headers or {})}

    def client() -> None:
        pool = urllib3.HTTPConnectionPool(url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1]),
                                          maxsize=1, retries=False, timeout=10)
        mine: list[float] = []
        for i in counter:
            started = time.perf_counter()
            resp = pool.request("POST", "/v1/chat/completions", body=make_body(i), headers=send_headers)
            mine.append(time.perf_counter() - started)
            if resp.status != 200 or (expect and resp.headers.get("x-llm-edge-cache") != expect):
                errors.append(f"{resp.status} {resp.headers.get('x-llm-edge-cache')}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"case expecting {expect!r} got {len(errors)} other answers, e.g. {errors[:3]}")
    return total / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument("--upstream-latency", type=float, default=0.0,
                        help="seconds the emulator waits before each answer (a real provider: 0.3-2)")
    args = parser.parse_args()

    emulator, emulator_url = start_emulator(args.upstream_latency)
    redis_server = RedisServer().start()
    env = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
           "OPENAI_BASE_URL": emulator_url + "/v1", "ANTHROPIC_BASE_URL": emulator_url,
           "ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url, "LOG_LEVEL": "warning"}
    tiered = GatewayProcess(env).start()
    l2_only = GatewayProcess({**env, "L1_CACHE_SIZE": "0"}).start()
    try:
        hot = body("What is the capital of France?")
        cases = [
            ("L1 hit", tiered.url, lambda i: hot, "hit-l1", None),
            ("L2 hit (L1 off)", l2_only.url, lambda i: hot, "hit-l2", None),
            ("miss (upstream, then fill)", tiered.url, lambda i: body(f"question number {i}"), "miss", None),
            ("bypass (no-store)", tiered.url, lambda i: hot, "bypass", {"cache-control": "no-store"}),
        ]
        for gw in (tiered, l2_only):  # warm-up: fills L2 and both workers' L1, opens connections
            run_case(gw.url, lambda i: hot, None, 200, args.clients)
        print(f"{args.requests} requests per case, {args.clients} keep-alive clients, gateway: 2 workers x "
              f"8 threads, upstream latency {args.upstream_latency * 1000:.0f} ms\n")
        print("| case | requests/s | p50 ms | p90 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for name, url, make_body, expect, headers in cases:
            rps, lat = run_case(url, make_body, expect, args.requests, args.clients, headers)
            q = statistics.quantiles(lat, n=100)
            print(f"| {name} | {rps:,.0f} | {statistics.median(lat) * 1000:.2f} | {q[89] * 1000:.2f} | "
                  f"{q[98] * 1000:.2f} |", flush=True)
        print("\nIn process, cache stage only (one thread, typical 1 KB request, 600-byte answer):\n")
        print("| step | microseconds per request |")
        print("|---|---:|")
        for name, micros in stage_costs(redis_server.url):
            print(f"| {name} | {micros:.1f} |")
    finally:
        tiered.stop()
        l2_only.stop()
        redis_server.close()
        emulator.terminate()
        emulator.wait(5)


if __name__ == "__main__":
    main()

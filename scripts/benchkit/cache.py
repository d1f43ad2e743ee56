"""What the cache stage costs per request, in process: the key, an L1 hit, an L2 hit, a miss and its fill.

The cache stage alone (``app.cache.stage.CacheStage``), without HTTP around it, for a typical ~1 KB
chat request and a 600-byte answer, on one thread; the L2 rows make real round trips to a private
redis-server. End to end, the cache's rows are the benchmark's (scripts/bench.py: gateway L1 hit,
L2 hit and miss against their floors).

Run: ``.venv/bin/python -m benchkit.cache [--calls 20000]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import time

import orjson

from app.cache.control import CacheControl
from app.cache.keys import cache_key
from app.cache.l1 import L1Cache
from app.cache.l2 import L2Cache
from app.cache.stage import CacheStage
from app.cache.tiered import TieredCache
from app.config.settings import Settings
from app.context import RequestContext
from app.formats import openai as openai_codec
from app.providers.routing import Provider, Target
from app.resilience.redis_guard import RedisGuard, make_redis
from benchkit import micro
from benchkit.procs import RedisServer

PROMPT = "Summarise the following paragraph in one sentence. " + "lorem ipsum dolor sit amet " * 35
TARGET = Target(Provider("openai", "openai", "http://x", "k", None, True), "gpt-4o-mini")
ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "A short summary sentence. " * 10}}],
    "usage": {"prompt_tokens": 200, "completion_tokens": 60, "total_tokens": 260},
}


def request(text: str):  # type: ignore[no-untyped-def]
    return openai_codec.parse_request(orjson.loads(orjson.dumps({
        "model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}]})))


def stage_costs(redis_url: str, n: int) -> list[tuple[str, float]]:
    """Microseconds per request spent in the cache stage, one row per step."""
    req = request(PROMPT)
    answer = openai_codec.parse_response(ANSWER)
    guard = RedisGuard(make_redis(Settings.from_env({"REDIS_URL": redis_url})))
    normal = CacheControl()
    ctx = RequestContext(request_id="r", endpoint="/v1/chat/completions", dialect="openai")
    deadline = time.monotonic() + 3600
    l1_stage = CacheStage(TieredCache(L1Cache(1000, 64 << 20, 300), None))
    l2_stage = CacheStage(TieredCache(L1Cache(0, 0, 0), L2Cache(guard, 3600)))
    for stage in (l1_stage, l2_stage):
        stage.begin(ctx, req, TARGET, normal, deadline)[1].store(TARGET, answer)
    fill_stage = CacheStage(TieredCache(L1Cache(1000, 64 << 20, 300), L2Cache(guard, 60)))
    unique = iter([request(f"{PROMPT} {i}") for i in range(n // 10)])  # each used once: every one a miss

    def miss_and_fill() -> None:
        fill_stage.begin(ctx, next(unique), TARGET, normal, deadline)[1].store(TARGET, answer)

    return [
        ("key (hash of the canonical request)", micro.mean_us(lambda: cache_key(req, TARGET, "client:a"), n)),
        ("L1 hit", micro.mean_us(lambda: l1_stage.begin(ctx, req, TARGET, normal, deadline), n)),
        ("L2 hit (one Redis round trip, decode)",
         micro.mean_us(lambda: l2_stage.begin(ctx, req, TARGET, normal, deadline), n // 10)),
        ("miss + fill (L1, L2 GET and SET)", micro.mean_us(miss_and_fill, n // 10)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per in-memory row (a tenth for Redis rows)")
    args = parser.parse_args()
    redis = RedisServer().start()
    try:
        rows = stage_costs(redis.url, args.calls)
    finally:
        redis.close()
    print("cache stage only (one thread, typical 1 KB request, 600-byte answer):\n")
    print(micro.table(["step", "microseconds per request"], ((name, f"{us:.1f}") for name, us in rows)))


if __name__ == "__main__":
    main()

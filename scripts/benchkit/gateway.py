"""The gateway as production runs it, for the benchmark: gunicorn.conf.py, metrics, L1 + L2, limits, logs.

Differences from a production deployment, on purpose: everything binds to
127.0.0.1; the rate limit file allows far more than the benchmark sends (the
limiter runs, it just never refuses); one generated client key is used (auth
runs); tracing is off unless asked, since no collector is running here.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

from tests.support.processes import UNREACHABLE_RATE_LIMITS, GatewayProcess

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=10))

OPENAI_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
CLIENT_KEY = "bench-" + secrets.token_hex(16)
SLOW_PROVIDER = "bench-slow"


class BenchConfig:
    """The generated config files (models, rate limits, clients) of one benchmark run."""

    def __init__(self, drip_url: str | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llm-edge-bench-config-"))
        providers = ""
        if drip_url:
            providers = f"providers:\n  {SLOW_PROVIDER}:\n    type: openai\n    base_url: {drip_url}/v1\n"
        (self.dir / "models.yaml").write_text(providers + "models: {}\n")
        (self.dir / "rate-limits.yaml").write_text(UNREACHABLE_RATE_LIMITS)
        digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
        (self.dir / "clients.yaml").write_text(
            f"clients:\n  - id: bench\n    tier: enterprise\n    key_sha256: {digest}\n")

    def env(self) -> dict[str, str]:
        return {"MODELS_FILE": str(self.dir / "models.yaml"),
                "RATE_LIMITS_FILE": str(self.dir / "rate-limits.yaml"),
                "CLIENTS_FILE": str(self.dir / "clients.yaml")}

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {CLIENT_KEY}"}


def gateway(*, upstream, redis_url: str, config: BenchConfig, workers: int, threads: int,
            extra: dict[str, str] | None = None, tracing: bool = False) -> GatewayProcess:
    """A gateway process (not started) with production settings pointed at ``upstream``."""
    env = {
        "OPENAI_API_KEY": "sk-bench-openai-key-0000000000",
        "ANTHROPIC_API_KEY": "sk-ant-bench-anthropic-key-0000000000",
        "OPENAI_BASE_URL": upstream.openai_base_url,
        "ANTHROPIC_BASE_URL": upstream.anthropic_base_url,
        "ENABLE_L2_CACHE": "true",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "info",
        "ENABLE_TRACING": "true" if tracing else "false",
        **config.env(),
        **(extra or {}),
    }
    return GatewayProcess(env, workers=workers, threads=threads)


def scrape(metrics_url: str) -> dict[str, float]:
    """The sums the benchmark checks: requests (and those the cache answered), hits and misses per tier."""
    text = _http.request("GET", metrics_url).data.decode()
    totals = {"requests": 0.0, "from_cache": 0.0, "coalesced": 0.0, "hit_l1": 0.0, "hit_l2": 0.0, "miss_l1": 0.0,
              "miss_l2": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name == "llm_edge_requests_total":
            totals["requests"] += float(value)
            if 'provider="cache"' in name_labels:
                totals["from_cache"] += float(value)
        elif name == "llm_edge_cache_coalesced_total":
            totals["coalesced"] += float(value)
        elif name in ("llm_edge_cache_hits_total", "llm_edge_cache_misses_total"):
            kind = "hit" if "hits" in name else "miss"
            for tier in ("l1", "l2"):
                if f'tier="{tier}"' in name_labels:
                    totals[f"{kind}_{tier}"] += float(value)
    return totals


def warm_l1(gateway: GatewayProcess, body: bytes, headers: dict[str, str], connections: int,
            path: str = OPENAI_PATH) -> None:
    """Send the fixed body on many fresh connections so that every worker has it in its L1."""
    def one() -> None:
        http = urllib3.PoolManager(retries=False, timeout=5)
        for _ in range(4):
            http.request("POST", gateway.url + path, body=body,
                         headers={"content-type": "application/json", **headers})
    with ThreadPoolExecutor(min(16, max(2, connections))) as pool:
        for future in [pool.submit(one) for _ in range(max(8, connections))]:
            future.result()

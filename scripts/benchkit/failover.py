"""What a Redis failover costs three gateway replicas: failed requests, slow requests, uncounted ones, recovery.

Starts a 3-primary Redis Cluster with a replica each (then a primary + replica +
3 Sentinels), three one-worker gateways on it (RATE_LIMIT_REPLICAS=3), and one
client limited to ``--rate`` requests per second. Two loads run through the
replicas while the primary holding the limiter's hash slot (or the Sentinel
primary) is killed one second in: a calm one under the limit, and a pressing
one far above it. Printed per topology and load: requests, failed (not 200 or
429), the slowest, those decided locally (their ``x-ratelimit-limit-requests``
is a worker's share, not the tier's burst: counted in no shared place), the
seconds from the kill to the last of those (the gateway back on Redis by
itself), and for the pressing load how many were admitted against the limit's
worth over the same seconds. Timeouts as tests/support/redis_topologies.py:
cluster-node-timeout and down-after-milliseconds of 1 s.

Run: ``.venv/bin/python -m benchkit.failover [--seconds 12]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import urllib3
import yaml
from emulator import Emulator

from tests.support.processes import GatewayProcess
from tests.support.redis_topologies import ClusterProcesses, SentinelProcesses

KEY = "sk-edge-failover-client-key-000000001"
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10), maxsize=32)


def gateways(emu: Emulator, d: Path, redis_url: str, rate: int) -> list[GatewayProcess]:
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "failover", "tier": "shared", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}))
    (d / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {"per_client": {"tier_shared": rate}}}))
    env = {"OPENAI_API_KEY": "sk-emu", "ANTHROPIC_API_KEY": "sk-ant-emu", "OPENAI_BASE_URL": emu.openai_base_url,
           "ANTHROPIC_BASE_URL": emu.anthropic_base_url, "REDIS_URL": redis_url, "RATE_LIMIT_REPLICAS": "3",
           "CLIENTS_FILE": str(d / "clients.yaml"), "RATE_LIMITS_FILE": str(d / "limits.yaml")}
    return [GatewayProcess(env, workers=1, threads=8).start() for _ in range(3)]


def load(urls: list[str], seconds: float, per_second: float | None) -> list[tuple[float, int, float, str]]:
    """(finished at, status, latency, limit header) of requests round the replicas, paced or as fast as can be."""
    out: list[tuple[float, int, float, str]] = []
    lock = threading.Lock()
    started = time.monotonic()
    threads = [(u, i) for u in urls for i in range(2)]
    gap = len(threads) / per_second if per_second else 0.003

    def run(url: str) -> None:
        while time.monotonic() - started < seconds:
            t = time.monotonic()
            try:
                resp = http.request("GET", url + "/v1/models", headers={"x-api-key": KEY})
                status, limit = resp.status, resp.headers.get("x-ratelimit-limit-requests", "")
            except urllib3.exceptions.HTTPError:
                status, limit = 0, ""
            now = time.monotonic()
            with lock:
                out.append((now - started, status, now - t, limit))
            time.sleep(max(0.0, gap - (time.monotonic() - t)))

    workers = [threading.Thread(target=run, args=(u,)) for u, _ in threads]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 15)
    return out


def report(topology: str, kind: str, results: list[tuple[float, int, float, str]], rate: int, kill_at: float) -> None:
    local = [r for r in results if r[3] and r[3] != str(rate)]
    admitted = sum(1 for r in results if r[1] == 200 and r[0] >= 1.0)
    span = max(r[0] for r in results) - 1.0
    back = f"{max(r[0] for r in local) - kill_at:.1f} s" if local else "never left Redis"
    print(f"| {topology} | {kind} | {len(results)} | {sum(1 for r in results if r[1] not in (200, 429))} | "
          f"{max(r[2] for r in results) * 1000:.0f} ms | {len(local)} | {back} | "
          f"{admitted} vs {rate * span + rate:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=int, default=30)
    args = parser.parse_args()
    emu = Emulator(openai_key="sk-emu", anthropic_key="sk-ant-emu").start()
    print("| topology | load | requests | failed | slowest | decided locally | kill to back on Redis | "
          "admitted after 1 s vs the limit's worth (+ one burst) |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for topology in ("cluster", "sentinel"):
            for kind, per_second in (("calm (1/3 of the limit)", args.rate / 3), ("pressing (far above)", None)):
                d = Path(tempfile.mkdtemp(prefix="llm-edge-failover-"))
                redis_group: ClusterProcesses | SentinelProcesses
                if topology == "cluster":
                    redis_group = ClusterProcesses(primaries=3, replicas=1).start()
                    victim = redis_group.primary_of("llm-edge:ratelimit:{llm-edge-limits}:global")
                else:
                    redis_group = SentinelProcesses().start()
                    victim = redis_group.primary
                gws = gateways(emu, d, redis_group.url, args.rate)
                try:
                    time.sleep(1.0)
                    threading.Timer(1.0, victim.kill).start()
                    results = load([gw.url for gw in gws], args.seconds, per_second)
                    report(topology, kind, results, args.rate, 1.0)
                finally:
                    for gw in gws:
                        gw.stop()
                    redis_group.close()
                    shutil.rmtree(d, ignore_errors=True)
    finally:
        emu.stop()


if __name__ == "__main__":
    main()

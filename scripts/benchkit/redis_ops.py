"""Redis operations, Redis CPU and bytes per request, by path: what docs/scaling.md sizes Redis from.

One gateway (one worker) on a private redis-server and the provider emulator. For
each path (an L2 hit, a miss, a streamed miss, a request refused by its limit)
it resets Redis's ``INFO commandstats``, sends ``--requests`` requests one after
another, waits for the spend ledger's once-a-second flush, and prints the
commands Redis ran per request and the Redis process's CPU per request (from
/proc, so per 1,000 req/s is that times 1,000). Then the bytes one cached
answer takes (``MEMORY USAGE``) and ``used_memory`` per million entries written
like the gateway writes them, and redis-benchmark's ceiling for GET and SET on
this machine. L1 is off (``L1_CACHE_SIZE=0``), so a repeated request is an L2
hit, and every request is checked in Redis (a 10/s tier: no leased batches).

Run: ``.venv/bin/python -m benchkit.redis_ops [--requests 200]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import redis
import urllib3
import yaml
from emulator import Emulator

from benchkit.procs import RedisServer
from tests.support.processes import GatewayProcess

KEY = "sk-edge-redis-ops-client-key-000001"
LIMITED_KEY = "sk-edge-redis-ops-limited-key-00002"
BUDGET_KEY = "sk-edge-redis-ops-budget-key-000003"
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=20))


def config(d: Path) -> dict[str, str]:
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "ops", "tier": "counted", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()},
        {"id": "limited", "tier": "tiny", "key_sha256": hashlib.sha256(LIMITED_KEY.encode()).hexdigest()},
        {"id": "budgeted", "tier": "counted", "key_sha256": hashlib.sha256(BUDGET_KEY.encode()).hexdigest(),
         "budget_cents_per_day": 10**9}]}))
    (d / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {
        "global": {"requests_per_second": 100000},
        "per_client": {"tier_counted": {"requests_per_second": 10, "burst": 100000, "tokens_per_minute": 10**9},
                       "tier_tiny": {"requests_per_second": 0.001, "burst": 1}}}}))
    return {"CLIENTS_FILE": str(d / "clients.yaml"), "RATE_LIMITS_FILE": str(d / "limits.yaml")}


def chat(url: str, text: str, key: str = KEY, stream: bool = False) -> int:
    body: dict = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    resp = http.request("POST", url + "/v1/chat/completions", body=orjson.dumps(body),
                        headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    return resp.status


def cpu_ns(pid: int) -> int:
    """Nanoseconds ``pid`` has run on a CPU (schedstat: finer than /proc/pid/stat's clock ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


class Monitor:
    """Redis's MONITOR feed: each command the gateway sent, and each one its Lua scripts ran."""

    def __init__(self, url: str) -> None:
        self.sent: Counter[str] = Counter()
        self.in_scripts: Counter[str] = Counter()
        self.url = url
        self._client = redis.Redis.from_url(url)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._client.monitor() as feed, contextlib.suppress(redis.ConnectionError):  # stop(): killed
            for seen in feed.listen():
                name = seen["command"].split(" ", 1)[0].upper().strip('"')
                if name in ("MONITOR", "INFO", "PING", "CONFIG"):
                    continue
                (self.in_scripts if seen.get("client_type") == "lua" else self.sent)[name] += 1

    def stop(self) -> None:
        admin = redis.Redis.from_url(self.url)
        for client in admin.client_list():
            if "O" in client["flags"]:  # the MONITOR connection
                admin.client_kill_filter(_id=client["id"])
        self._thread.join(5)


def measure(url: str, redis_pid: int, n: int, one) -> tuple[Counter[str], Counter[str], float]:  # type: ignore[no-untyped-def]
    """Commands sent and run by scripts per ``n`` requests (MONITOR on), then Redis's CPU microseconds per
    request in a second pass of ``n`` (MONITOR off: it costs Redis CPU of its own)."""
    time.sleep(1.2)  # the previous path's spend flush is past
    monitor = Monitor(url)
    time.sleep(0.2)
    for i in range(n):
        one(i)
    time.sleep(1.5)  # the spend ledger's flush (once a second) and write-behind fills reach Redis
    monitor.stop()
    used = cpu_ns(redis_pid)
    for i in range(n, 2 * n):
        one(i)
    time.sleep(1.5)
    used = cpu_ns(redis_pid) - used
    return monitor.sent, monitor.in_scripts, used / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--entries", type=int, default=100_000, help="entries written for used_memory per entry")
    args = parser.parse_args()
    n = args.requests
    d = Path(tempfile.mkdtemp(prefix="llm-edge-redis-ops-"))
    server = RedisServer().start()
    assert server.proc is not None
    emu = Emulator(openai_key="sk-emu", anthropic_key="sk-ant-emu").start()
    gw = GatewayProcess({**config(d), "OPENAI_API_KEY": "sk-emu", "ANTHROPIC_API_KEY": "sk-ant-emu",
                         "OPENAI_BASE_URL": emu.openai_base_url, "ANTHROPIC_BASE_URL": emu.anthropic_base_url,
                         "REDIS_URL": server.url, "ENABLE_L2_CACHE": "true", "L1_CACHE_SIZE": "0",
                         "CACHE_COALESCING": "false"}, workers=1, threads=8).start()
    r = redis.Redis.from_url(server.url)
    try:
        run = uuid.uuid4().hex[:8]
        hot = f"the one cached question {run}"
        assert chat(gw.url, hot) == 200
        time.sleep(0.5)
        paths = {
            "L2 hit": lambda i: chat(gw.url, hot),
            "miss (JSON)": lambda i: chat(gw.url, f"question {i} {run}"),
            "miss (stream)": lambda i: chat(gw.url, f"streamed {i} {run}", stream=True),
            "miss by a client with a spend budget": lambda i: chat(gw.url, f"budgeted {i} {run}", key=BUDGET_KEY),
            "refused by its limit (429)": lambda i: chat(gw.url, f"limited {i} {run}", key=LIMITED_KEY),
        }
        chat(gw.url, "spend the one-request burst", key=LIMITED_KEY)
        rows = [(name, *measure(server.url, server.proc.pid, n, one)) for name, one in paths.items()]
        print(f"## Redis commands per request ({n} requests per path, one worker, L1 off, MONITOR on)\n")
        print("| path | round trips per request (commands sent) | run inside those scripts | Redis CPU per request |")
        print("|---|---|---|---|")

        def per(counts: Counter[str]) -> str:
            total = sum(counts.values()) / n
            return f"{total:.2f}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in counts.most_common() if v / n >= 0.005)
        for name, sent, in_scripts, cpu_us in rows:
            print(f"| {name} | {per(sent)} | {per(in_scripts)} | {cpu_us:.0f} µs |")

        keys = r.keys("llm-edge:cache:v2:*")
        sizes = [r.memory_usage(k) or 0 for k in keys]
        lengths = [r.strlen(k) for k in keys]
        print(f"\n## One cached answer ({len(keys)} entries of this run)\n")
        print(f"- value: {sum(lengths) / len(lengths):.0f} bytes on average (the entry as stored, with its expiry)")
        print(f"- MEMORY USAGE: {sum(sizes) / len(sizes):.0f} bytes on average (value, key and Redis's overhead)")
        template = r.get(keys[0]) or b""
        r.flushall()
        before = r.info("memory")["used_memory"]
        pipe = r.pipeline(transaction=False)
        for i in range(args.entries):
            pipe.set(f"llm-edge:cache:v2:client:ops:{hashlib.sha256(str(i).encode()).hexdigest()}", template, ex=3600)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        per_entry = (r.info("memory")["used_memory"] - before) / args.entries
        print(f"- used_memory: {per_entry:.0f} bytes per entry over {args.entries:,} entries like it: "
              f"{per_entry * 1e6 / 2**30:.2f} GiB per million cached answers")

        bench = shutil.which("redis-benchmark")
        if bench:
            out = subprocess.run([bench, "-p", str(server.port), "-t", "get,set", "-n", "100000", "-q", "-d", "900"],
                                 capture_output=True, text=True, timeout=120).stdout
            print("\n## redis-benchmark on this machine (one connection pool of 50, 900-byte values)\n")
            for line in out.replace("\r", "\n").splitlines():
                if "requests per second" in line:
                    print(f"- {line.strip()}")
    finally:
        gw.stop()
        emu.stop()
        server.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

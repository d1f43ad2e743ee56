#!/usr/bin/env python3
"""What the resilience layer costs on the hot path, as tables.

1. Micro: the per-request work it adds (breaker permit + outcome, client
   address, disconnect watch for a stream), timed in-process.
2. End to end: a 2-worker gateway against the local emulator, non-streamed and
   streamed requests from concurrent clients; with ``--compare DIR`` the same
   load runs against another checkout (e.g. main) for a before/after table.

    .venv/bin/python scripts/bench_resilience.py [--seconds 5] [--clients 8] [--rounds 3] [--compare /work/main]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import urllib3  # noqa: E402

from app.config.trusted_proxies import ClientAddress, parse_allow_list  # noqa: E402
from app.resilience.breaker import BreakerPolicy, CircuitBreaker  # noqa: E402
from app.resilience.disconnects import DisconnectWatcher  # noqa: E402
from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY, emulator_module, provider_env  # noqa: E402
from tests.support.processes import GatewayProcess  # noqa: E402


def micro() -> list[tuple[str, float]]:
    breaker = CircuitBreaker("openai", BreakerPolicy())
    addr = ClientAddress(parse_allow_list("127.0.0.1,::1"))
    watcher = DisconnectWatcher()
    a, b = socket.socketpair()

    def permit_and_outcome() -> None:
        breaker.record(breaker.allow(), True)

    def watch_pair() -> None:
        watcher.watch(a, lambda: None)()

    rows = []
    for name, fn, n in [("breaker allow + record", permit_and_outcome, 200_000),
                        ("client address, no X-Forwarded-For", lambda: addr("127.0.0.1", None), 200_000),
                        ("client address, trusted proxy", lambda: addr("127.0.0.1", "203.0.113.7"), 100_000),
                        ("disconnect watch + unwatch (streams)", watch_pair, 20_000)]:
        best = min(timeit.repeat(fn, number=n, repeat=3)) / n
        rows.append((name, best * 1e6))
    a.close()
    b.close()
    return rows


def load(gw: GatewayProcess, stream: bool, seconds: float, clients: int) -> tuple[float, float, float, int]:
    body = json.dumps({"model": "gpt-4o-mini", "stream": stream,
                       "messages": [{"role": "user", "content": "one two three four five"}]}).encode()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        nonlocal errors
        http = urllib3.PoolManager(maxsize=1, retries=False, timeout=10)
        mine, bad = [], 0
        while time.monotonic() < stop:
            started = time.monotonic()
            resp = http.request("POST", gw.url + "/v1/chat/completions", body=body,  # every request upstream
                                headers={"content-type": "application/json", "cache-control": "no-store"})
            if resp.status == 200:
                mine.append(time.monotonic() - started)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return len(latencies) / seconds, statistics.median(latencies) * 1000, p99 * 1000, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--compare", type=Path, help="another checkout to run the same load against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("| per-request work | µs |\n|---|---:|")
    for name, us in micro():
        print(f"| {name} | {us:.2f} |")

    emu = emulator_module.Emulator(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY).start()
    roots = [ROOT, *([args.compare] if args.compare else [])]
    results: dict[tuple[Path, bool], list[tuple[float, float, float, int]]] = {}
    try:
        for _ in range(args.rounds):  # interleaved rounds: a busy moment hurts every checkout alike
            for root in roots:
                gw = GatewayProcess({**provider_env(emu), "LOG_LEVEL": "warning"}, cwd=root).start()
                try:
                    load(gw, False, 0.5, args.clients)  # warm up pools and imports
                    for stream in (False, True):
                        results.setdefault((root, stream), []).append(load(gw, stream, args.seconds, args.clients))
                finally:
                    gw.stop()
    finally:
        emu.stop()
    print(f"\n{args.rounds} interleaved rounds of {args.seconds:g} s, {args.clients} clients; median round by req/s\n")
    print("| checkout | request | req/s | p50 ms | p99 ms | errors |\n|---|---|---:|---:|---:|---:|")
    for (root, stream), rounds in results.items():
        rps, p50, p99, errors = sorted(rounds)[len(rounds) // 2]
        print(f"| {root} | {'stream' if stream else 'json'} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the resilience layer adds per request, in process: breaker permit + outcome, client address, disconnects.

Each piece alone, on one thread, the best of three repeats. Under load, before against after, two
checkouts side by side: benchkit.ab.

Run: ``.venv/bin/python -m benchkit.resilience [--scale 1.0]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import socket

from app.config.trusted_proxies import ClientAddress, parse_allow_list
from app.resilience.breaker import BreakerPolicy, CircuitBreaker
from app.resilience.disconnects import DisconnectWatcher
from benchkit import micro


def rows(scale: float) -> list[tuple[str, float]]:
    breaker = CircuitBreaker("openai", BreakerPolicy())
    addr = ClientAddress(parse_allow_list("127.0.0.1,::1"))
    watcher = DisconnectWatcher()
    a, b = socket.socketpair()

    def permit_and_outcome() -> None:
        breaker.record(breaker.allow(), True)

    def watch_pair() -> None:
        watcher.watch(a, lambda: None)()

    try:
        return [(name, micro.mean_us(fn, max(1, int(n * scale)), rounds=3, pick=min)) for name, fn, n in [
            ("breaker allow + record", permit_and_outcome, 200_000),
            ("client address, no X-Forwarded-For", lambda: addr("127.0.0.1", None), 200_000),
            ("client address, trusted proxy", lambda: addr("127.0.0.1", "203.0.113.7"), 100_000),
            ("disconnect watch + unwatch (streams)", watch_pair, 20_000),
        ]]
    finally:
        a.close()
        b.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row's number of calls")
    args = parser.parse_args()
    print(micro.table(["per-request work", "µs"], ((name, f"{us:.2f}") for name, us in rows(args.scale))))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What observability costs per request, in-process, printed as a table.

    .venv/bin/python scripts/bench_observability.py [--calls N]

Times the observability work each request does, piece by piece, on one
thread: the end-of-request bookkeeping (request metrics + the JSON access
line written to a file at INFO), accounting (tokens, cost, client spend), and
the span calls of one request with one upstream attempt, with tracing off and
on (OTLP/HTTP to a collector that accepts connections and never answers: the
worst case). Whole-gateway throughput is scripts/bench.py's job; on a 2-core
machine its run-to-run noise (hundreds of microseconds) hides differences of
this size, which is why they are measured here in isolation.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from app.accounting.cost import PriceTable  # noqa: E402
from app.accounting.spend import SpendLedger  # noqa: E402
from app.accounting.usage import Accounting  # noqa: E402
from app.config.settings import Settings  # noqa: E402
from app.context import RequestContext  # noqa: E402
from app.formats.canonical import ChatRequest, Message, TextBlock, Usage  # noqa: E402
from app.observability import logging as json_logging  # noqa: E402
from app.observability.access import request_finished, request_started  # noqa: E402
from app.observability.tracing import Tracing  # noqa: E402
from app.providers.routing import Provider, Target  # noqa: E402
from app.resilience.redis_guard import RedisGuard  # noqa: E402

TARGET = Target(Provider("openai", "openai", "https://api.openai.com/v1", "k", "K", True), "gpt-4o-mini")
REQUEST = ChatRequest(model="gpt-4o-mini", messages=(Message("user", (TextBlock("hi"),)),))


def microseconds(fn: Callable[[], object], calls: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean time per call: steadier on a busy machine than one long run."""
    means = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(means)


def end_of_request() -> None:
    ctx = RequestContext("r", "/v1/chat/completions", "openai")
    request_started(ctx)
    request_finished(ctx)


def spans(tracing: Tracing) -> None:
    ctx = RequestContext("r", "/v1/chat/completions", "openai")
    tracing.start_request(ctx, "POST", "/v1/chat/completions", "/v1/chat/completions")
    span = tracing.start_attempt(ctx, TARGET, REQUEST, {})
    Tracing.end_attempt(span, TARGET)
    Tracing.end_request(ctx)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000, help="calls per round (5 rounds)")
    calls = parser.parse_args().calls

    json_logging.configure("INFO", str(Path(tempfile.mkdtemp()) / "access.log"))
    hole = socket.socket()  # a collector that accepts and never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(128)
    accounting = Accounting(PriceTable.load("config/pricing.yaml"), SpendLedger(RedisGuard(None)))
    ctx = RequestContext("r", "/v1/chat/completions", "openai", client_id="acme")
    usage = Usage(120, 80, 0)
    off = Tracing()
    on = Tracing.from_settings(Settings(otlp_endpoint=f"http://127.0.0.1:{hole.getsockname()[1]}",
                                        otlp_protocol="http/protobuf"))
    rows = [
        ("end of request: metrics + JSON access line", microseconds(end_of_request, calls)),
        ("accounting: tokens, cost, spend",
         microseconds(lambda: accounting.upstream(ctx, "openai", "gpt-4o-mini", usage), calls)),
        ("span calls, tracing off", microseconds(lambda: spans(off), calls)),
        ("span calls, tracing on (2 spans, dead collector)", microseconds(lambda: spans(on), calls)),
    ]
    on.shutdown()
    hole.close()
    logging.shutdown()

    width = max(len(what) for what, _ in rows)
    print(f"observability work per request ({calls} calls x 5 rounds, median, 1 thread, {os.cpu_count()} CPUs)")
    print(f"{'what':<{width}}  microseconds")
    for what, value in rows:
        print(f"{what:<{width}}  {value:10.2f}")


if __name__ == "__main__":
    main()

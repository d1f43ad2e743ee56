"""What observability costs per request, in process: access line and metrics, accounting, span calls.

Times the observability work each request does, piece by piece, on one thread: the end-of-request
bookkeeping (request metrics + the JSON access line written to a file at INFO), accounting (tokens, cost,
client spend), and the span calls of one request with one upstream attempt, with tracing off and on
(OTLP/HTTP to a collector that accepts connections and never answers: the worst case). Whole-gateway
throughput is scripts/bench.py's job; see benchkit/micro.py for why these are timed alone.

Run: ``.venv/bin/python -m benchkit.observability [--calls N]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
from pathlib import Path

from app.accounting.cost import PriceTable
from app.accounting.spend import SpendLedger
from app.accounting.usage import Accounting
from app.config.settings import Settings
from app.context import RequestContext
from app.formats.canonical import ChatRequest, Message, TextBlock, Usage
from app.observability import logging as json_logging
from app.observability.access import request_finished, request_started
from app.observability.tracing import Tracing
from app.providers.routing import Provider, Target
from app.resilience.redis_guard import RedisGuard
from benchkit import micro
from benchkit.procs import ROOT

TARGET = Target(Provider("openai", "openai", "https://api.openai.com/v1", "k", "K", True), "gpt-4o-mini")
REQUEST = ChatRequest(model="gpt-4o-mini", messages=(Message("user", (TextBlock("hi"),)),))
ROUNDS = 5


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help=f"calls per round ({ROUNDS} rounds)")
    calls = parser.parse_args().calls

    json_logging.configure("INFO", str(Path(tempfile.mkdtemp()) / "access.log"))
    hole = socket.socket()  # a collector that accepts and never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(128)
    accounting = Accounting(PriceTable.load(str(ROOT / "config" / "pricing.yaml")), SpendLedger(RedisGuard(None)))
    ctx = RequestContext("r", "/v1/chat/completions", "openai", client_id="acme")
    usage = Usage(120, 80, 0)
    off = Tracing()
    on = Tracing.from_settings(Settings(otlp_endpoint=f"http://127.0.0.1:{hole.getsockname()[1]}",
                                        otlp_protocol="http/protobuf"))
    rows = [
        ("end of request: metrics + JSON access line", micro.mean_us(end_of_request, calls, ROUNDS)),
        ("accounting: tokens, cost, spend",
         micro.mean_us(lambda: accounting.upstream(ctx, "openai", "gpt-4o-mini", usage), calls, ROUNDS)),
        ("span calls, tracing off", micro.mean_us(lambda: spans(off), calls, ROUNDS)),
        ("span calls, tracing on (2 spans, dead collector)", micro.mean_us(lambda: spans(on), calls, ROUNDS)),
    ]
    on.shutdown()
    hole.close()
    logging.shutdown()
    print(f"observability work per request ({calls} calls x {ROUNDS} rounds, median, 1 thread, "
          f"{os.cpu_count()} CPUs)\n")
    print(micro.table(["what", "microseconds"], ((what, f"{us:.2f}") for what, us in rows)))


if __name__ == "__main__":
    main()

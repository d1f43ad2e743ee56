"""Clients hanging up mid-stream: the worker thread is freed and the upstream connection closed at once.

The provider drips one event every few seconds, so a gateway that only notices
a client gone at its next write would hold each thread (and its upstream
connection) for seconds; with two threads per worker, a handful of such
disconnects would leave no thread for the next caller.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import urllib3

from tests.conftest import UNCACHED, Fault
from tests.support.metrics import scrape
from tests.support.processes import wait_until
from tests.support.tcp import CLOSE_WAIT, connections_to, far_ends

pytestmark = pytest.mark.timeout(90)

DRIP = 6.0  # seconds between the provider's events
LONG_TEXT = " ".join(f"word{i}" for i in range(20))
STREAMS = [("/v1/messages", "claude-3-5-haiku-latest"), ("/v1/chat/completions", "gpt-4o-mini")]


def start_stream(gateway, path: str, model: str) -> socket.socket:
    """Send a streaming request on a raw socket and return once the first event has arrived."""
    body = json.dumps({"model": model, "max_tokens": 100, "stream": True,
                       "messages": [{"role": "user", "content": LONG_TEXT}]}).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(body), body))
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    return sock


def test_repeated_disconnects_free_threads_and_close_upstream(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "GUNICORN_THREADS": "2"}, threads=2)
    workers = gw.worker_pids()
    errors_before = scrape(gw.metrics_url).total("llm_edge_provider_errors_total")
    rounds = 6  # more than the 4 threads of 2 workers x 2 threads
    for i in range(rounds):
        upstream.push_faults(Fault(drip=DRIP))
        path, model = STREAMS[i % 2]
        sock = start_stream(gw, path, model)
        upstream_ports = {s.local_port for s in connections_to(workers, upstream.port)}
        assert upstream_ports  # the stream's upstream connection is open while the client listens
        hung_up = time.monotonic()
        sock.close()
        # The gateway drops its upstream connection at once, not at the provider's next event ...
        wait_until(lambda: not connections_to(workers, upstream.port), timeout=DRIP / 2,
                   what="the gateway to close its upstream connection")
        # ... and the emulator's side has seen the close (its socket got the FIN, or is gone already).
        assert all(s.state == CLOSE_WAIT for s in far_ends(upstream.port, upstream_ports))
        assert time.monotonic() - hung_up < DRIP / 2

    # Every thread is free: a normal request is answered right away.
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=3))
    resp = http.request("POST", gw.url + "/v1/chat/completions", headers={"content-type": "application/json"},
                        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
    assert resp.status == 200 and json.loads(resp.data)["choices"][0]["message"]["content"] == "Echo: hi"

    metrics = scrape(gw.metrics_url)
    assert metrics.total("llm_edge_client_disconnects_total") == rounds
    # A client leaving is not the provider's fault.
    assert metrics.total("llm_edge_provider_errors_total") == errors_before
    health = json.loads(http.request("GET", gw.url + "/health").data)
    assert all(p["state"] == "closed" for p in health["checks"]["circuit_breakers"]["detail"]["providers"].values())

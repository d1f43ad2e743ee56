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
from concurrent.futures import ThreadPoolExecutor

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


# --- Clients that leave before the answer is in --------------------------------------------------------------

SLOW = 10.0  # seconds the provider takes; a gateway that waits for it fails every bound below
LEFT_AFTER = 0.3  # seconds the client waits before it hangs up


def send(gateway, path: str, body: dict, extra: bytes = b"") -> socket.socket:
    """Send a request on a raw socket (nothing read back yet)."""
    raw = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=SLOW + 10)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                 % (path.encode(), len(raw), extra, raw))
    return sock


def chat_lines(gateway) -> list[dict]:
    """The access lines of chat requests."""
    return [entry for line in gateway.logs().splitlines() if line.startswith("{")
            and (entry := json.loads(line)).get("logger") == "llm_edge.access"
            and entry.get("endpoint") in ("/v1/messages", "/v1/chat/completions")]


def answer(gateway, text: str = "hi") -> urllib3.BaseHTTPResponse:
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=3))
    return http.request("POST", gateway.url + "/v1/chat/completions", headers={"content-type": "application/json"},
                        body=json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}))


BEFORE_ANSWER = {  # the provider's fault, whether the request streams, the gateway's extra environment
    "json, before the provider's headers": (Fault(delay=SLOW), False, {}),
    "json, before the headers, patches off": (Fault(delay=SLOW), False, {"LLM_EDGE_PATCHES": "false"}),
    "json, headers in, body awaited": (Fault(drip=SLOW), False, {}),
    "stream, before its first event": (Fault(delay=SLOW), True, {}),
}


@pytest.mark.parametrize("case", list(BEFORE_ANSWER))
def test_a_client_gone_before_the_answer_frees_the_thread_and_the_upstream_call(start_gateway, upstream, case):
    fault, stream, env = BEFORE_ANSWER[case]
    gw = start_gateway({**UNCACHED, "GUNICORN_THREADS": "2", **env}, threads=2)
    workers = gw.worker_pids()
    before = scrape(gw.metrics_url)
    rounds = 5  # more than the 4 threads of 2 workers x 2 threads
    for i in range(rounds):
        upstream.push_faults(fault)
        path, model = STREAMS[i % 2]
        sock = send(gw, path, {"model": model, "max_tokens": 100, "stream": stream,
                               "messages": [{"role": "user", "content": LONG_TEXT}]})
        wait_until(lambda: connections_to(workers, upstream.port), timeout=5, what="the upstream call")
        upstream_ports = {s.local_port for s in connections_to(workers, upstream.port)}
        time.sleep(LEFT_AFTER)
        sock.close()
        # The gateway drops its upstream connection at once, not when the provider answers ...
        wait_until(lambda: not connections_to(workers, upstream.port), timeout=1.0,
                   what="the gateway to close its upstream connection")
        # ... and the provider's side has seen the close.
        assert all(s.state == CLOSE_WAIT for s in far_ends(upstream.port, upstream_ports))
    assert upstream.count() == rounds  # no attempt was retried, none went to a fallback

    # Every thread is free: a normal request is answered right away.
    resp = answer(gw)
    assert resp.status == 200 and json.loads(resp.data)["choices"][0]["message"]["content"] == "Echo: hi"

    metrics = scrape(gw.metrics_url)
    assert metrics.total("llm_edge_client_disconnects_total") == rounds
    assert metrics.total("llm_edge_client_disconnects_total", endpoint="/v1/messages") == (rounds + 1) // 2
    assert metrics.total("llm_edge_provider_errors_total") == before.total("llm_edge_provider_errors_total")
    assert metrics.total("llm_edge_retries_total") == before.total("llm_edge_retries_total")
    wait_until(lambda: len(chat_lines(gw)) == rounds + 1, timeout=5, what="the access lines")
    assert sorted(line["status"] for line in chat_lines(gw)) == [200] + [499] * rounds


def test_a_client_that_stays_or_pipelines_gets_its_answer(start_gateway, upstream):
    """No false hang-up: a client waiting quietly, and one that sends its next request meanwhile."""
    gw = start_gateway(UNCACHED, threads=2)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "patience"}]}
    upstream.push_faults(Fault(delay=1.0), Fault(delay=1.0))
    quiet = send(gw, "/v1/chat/completions", body)
    eager = send(gw, "/v1/chat/completions", body)
    time.sleep(LEFT_AFTER)
    # The next request, pipelined before the first is answered: the socket is readable, yet not gone.
    raw = json.dumps(body).encode()
    eager.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
    for sock, answers in ((quiet, 1), (eager, 2)):
        received = b""
        while received.count(b"Echo: patience") < answers:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b" 200 " in received.split(b"\r\n\r\n", 1)[0]
        assert received.count(b"HTTP/1.1 200") == answers
        sock.close()
    assert scrape(gw.metrics_url).total("llm_edge_client_disconnects_total") == 0


def test_followers_of_a_leader_that_left_still_get_their_answer(start_gateway, upstream):
    """The coalescing leader's client hangs up: its followers call upstream themselves, and are answered."""
    gw = start_gateway(workers=1, threads=4)  # one worker: the followers meet the leader's flight
    workers = gw.worker_pids()
    text = f"coalesced {time.monotonic()}"
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    upstream.push_faults(Fault(delay=SLOW))  # the leader's call; the followers' own are answered at once
    leader = send(gw, "/v1/chat/completions", body)
    wait_until(lambda: connections_to(workers, upstream.port), timeout=5, what="the leader's upstream call")
    with ThreadPoolExecutor(2) as pool:
        followers = [pool.submit(answer_to, gw, body, stream) for stream in (False, True)]
        time.sleep(LEFT_AFTER)
        started = time.monotonic()
        leader.close()
        results = [f.result(timeout=SLOW) for f in followers]
    assert time.monotonic() - started < SLOW / 2
    assert upstream.count() == 3  # the leader's cut call, then one per follower
    assert results[0].status == 200 and json.loads(results[0].data)["choices"][0]["message"]["content"] == \
        f"Echo: {text}"
    assert results[1].status == 200 and b"data: [DONE]" in results[1].data
    metrics = scrape(gw.metrics_url)
    assert metrics.total("llm_edge_client_disconnects_total") == 1
    assert metrics.total("llm_edge_provider_errors_total") == 0


def answer_to(gateway, body: dict, stream: bool) -> urllib3.BaseHTTPResponse:
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=SLOW + 5))
    return http.request("POST", gateway.url + "/v1/chat/completions", headers={"content-type": "application/json"},
                        body=json.dumps({**body, "stream": stream}))

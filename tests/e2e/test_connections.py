"""Connection hardening, against a real 2-worker gunicorn with the shipped thread count.

Idle kept-alive connections and lingering ``Connection: close`` clients must not slow anyone down
(app/patches/gunicorn_connections.py moves gunicorn's graceful close off the event loop, and
GUNICORN_WORKER_CONNECTIONS leaves room for idle connections); slowloris heads are shed by
GUNICORN_HEADER_TIMEOUT while slow bodies are not; a framing error ends the connection; HEAD answers on
health; a stream still running at the drain deadline ends with an error event the SDKs raise.
"""

from __future__ import annotations

import resource
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from tests.conftest import UNCACHED, Fault

SHIPPED_THREADS = 768  # the thread count of the probe that found these defects (the default then)
# Normal requests are a few ms on an idle node; before the fixes they took 2-10 s. The machine running the
# tests is shared and small (2 cores), so the bound leaves room for its noise, not for a regression.
P99_BOUND = 0.05
SAMPLES = 60


@pytest.fixture(autouse=True, scope="module")
def _enough_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _get(port: int, path: str = "/health/live", close: bool = True, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{'Connection: close' if close else ''}\r\n\r\n".encode())
        return _read_answer(s)


def _read_answer(s: socket.socket) -> bytes:
    """One whole answer with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _latencies(port: int, n: int = SAMPLES) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        answer = _get(port)
        out.append(time.perf_counter() - t0)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return sorted(out)


def _p99(samples: list[float]) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def _open_kept_alive(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each got one keep-alive answer and now sit idle."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    for s in socks:
        answer = _read_answer(s)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return socks


@pytest.mark.timeout(180)
def test_two_thousand_idle_keepalive_connections_leave_requests_fast(start_gateway):
    gw = start_gateway(threads=SHIPPED_THREADS)
    idle = _open_kept_alive(gw.port, 2000)
    try:
        samples = _latencies(gw.port)
        print(f"2000 idle: p50 {samples[len(samples) // 2] * 1000:.1f} ms, p99 {_p99(samples) * 1000:.1f} ms")
        assert _p99(samples) < P99_BOUND, samples
        # and they are still alive: kept, not closed after their answer
        alive = sum(1 for s in idle[:200] if _still_open(s))
        assert alive == 200
    finally:
        for s in idle:
            s.close()


def _still_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


@pytest.mark.timeout(120)
def test_lingering_connection_close_clients_leave_requests_fast(start_gateway):
    """A health checker's way: ask with Connection: close, read the answer, keep the socket open a while."""
    gw = start_gateway(threads=SHIPPED_THREADS)
    stop = threading.Event()

    def linger() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
                s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                _read_answer(s)
                stop.wait(2.5)

    with ThreadPoolExecutor(64) as pool:
        lingerers = [pool.submit(linger) for _ in range(64)]
        time.sleep(0.5)  # all 64 have had their answer and hold their sockets
        try:
            samples = _latencies(gw.port)
        finally:
            stop.set()
        for f in lingerers:
            f.result()
    print(f"64 lingering: p50 {samples[len(samples) // 2] * 1000:.1f} ms, p99 {_p99(samples) * 1000:.1f} ms")
    assert _p99(samples) < P99_BOUND, samples


@pytest.mark.timeout(120)
def test_slowloris_heads_are_shed_but_slow_bodies_and_others_are_not(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "GUNICORN_HEADER_TIMEOUT": "2"}, threads=SHIPPED_THREADS)
    attackers = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
        s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        attackers.append(s)
    started = time.monotonic()

    # A legit client sending its body slowly (3 s, past the header timeout) is answered.
    body = (b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"slow body"}]}')
    slow_answer: list[bytes] = []

    def slow_body() -> None:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
            for i in range(0, len(body), len(body) // 6 + 1):
                time.sleep(0.5)
                s.sendall(body[i:i + len(body) // 6 + 1])
            slow_answer.append(_read_answer(s))

    slow = threading.Thread(target=slow_body)
    slow.start()
    try:
        samples = _latencies(gw.port, 20)  # others are served meanwhile
        print(f"during 1000 slowloris: {[round(x * 1000, 1) for x in samples]} ms")
        # Most are as fast as ever; one that comes while a worker is still starting threads for the
        # attackers (1000 on 2 cores), or finds all of one worker's threads pinned, waits at most until
        # the attackers are shed: measured once 1.4 s, then 1.4-23 ms.
        assert samples[len(samples) // 2] < P99_BOUND and samples[-1] < 2.0 + 0.5, samples
        for s in attackers:  # the attackers keep dripping header lines: each is closed all the same
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                pass
        shed = 0
        for s in attackers:
            s.settimeout(max(0.1, started + 8 - time.monotonic()))
            try:
                shed += s.recv(1024) == b""
            except ConnectionResetError:
                shed += 1
            except TimeoutError:
                pass
        assert shed == len(attackers)
        assert time.monotonic() - started < 8
        slow.join(20)
        assert slow_answer and slow_answer[0].startswith(b"HTTP/1.1 200"), slow_answer[:1]
        assert b"Echo: slow body" in slow_answer[0]
    finally:
        for s in attackers:
            s.close()


def test_a_framing_error_in_the_body_closes_the_connection(start_gateway):
    """A malformed chunk size: one answer, then the connection ends; the pipelined request is not answered."""
    gw = start_gateway()
    for bad in (b"zz\r\nhello\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + bad + b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.count(b"HTTP/1.1 ") == 1, data
        assert b'"status":"ok"' not in data


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_head_on_health_answers_like_get_without_a_body(gateway, path):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /health/live HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"application/json" in head
    assert rest.startswith(b"HTTP/1.1 200")  # no body in between: the next answer follows the head


@pytest.mark.timeout(90)
def test_streams_cut_by_the_drain_deadline_end_with_an_error_the_sdks_raise(start_gateway, upstream):
    gw = start_gateway({**UNCACHED, "GUNICORN_GRACEFUL_TIMEOUT": "3"})
    words = " ".join(f"w{i}" for i in range(40))
    upstream.set_default_fault(Fault(drip=0.25))  # about 10 s per stream, past the 3 s drain
    errors: dict[str, BaseException | None] = {}
    started = threading.Barrier(5)

    def consume(name: str, events) -> None:  # type: ignore[no-untyped-def]
        """Read a stream through its SDK, holding it open after the first event; keep what it raised."""
        try:
            first = True
            for _ in events():
                if first:
                    first = False
                    started.wait(20)
            errors[name] = None
        except BaseException as exc:
            errors[name] = exc

    def openai_stream(name: str) -> None:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=30)
        consume(name, lambda: client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": words}]))

    def anthropic_stream(name: str) -> None:
        client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0, timeout=30)
        consume(name, lambda: client.messages.create(
            model="claude-3-5-haiku-20241022", max_tokens=200, stream=True,
            messages=[{"role": "user", "content": words}]))

    threads = [threading.Thread(target=openai_stream, args=(f"openai-{i}",)) for i in range(2)]
    threads += [threading.Thread(target=anthropic_stream, args=(f"anthropic-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    started.wait(20)
    gw.signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    upstream.set_default_fault(None)
    assert len(errors) == 4
    for name, exc in errors.items():
        if name.startswith("openai"):
            assert isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError), (name, exc)
            assert "restarting" in str(exc), exc
        else:
            assert isinstance(exc, anthropic.APIStatusError), (name, exc)
            assert exc.body["error"]["type"] == "overloaded_error", exc.body
    assert gw.proc is not None and gw.proc.wait(15) == 0

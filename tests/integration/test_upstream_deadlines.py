"""UpstreamHTTP's limits, over real HTTP: first byte, idle gap, total deadline, and the failure words.

Why: urllib3's read timeout is per socket read, so a provider that drips bytes
never trips it; these tests prove the gateway's own limits do, and that each
error names the limit that ran out and carries the word the retry policy reads.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from app.errors import UpstreamError, UpstreamTimeout
from app.providers.http import UpstreamHTTP
from tests.conftest import OPENAI_KEY, Fault
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(20)

HEADERS = {"authorization": f"Bearer {OPENAI_KEY}", "content-type": "application/json"}
LONG = " ".join(f"w{i}" for i in range(40))


def deadline_from(seconds: float) -> float:
    return time.monotonic() + seconds


def body(stream: bool, text: str = "hi") -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


@pytest.fixture
def http() -> UpstreamHTTP:
    return UpstreamHTTP(connect_timeout=1.0, pool_maxsize=4)


def open_stream(http: UpstreamHTTP, url: str, *, first: float = 5.0, idle: float = 5.0, total: float = 10.0,
                text: str = "hi"):
    deadline = deadline_from(total)
    first_byte_by = time.monotonic() + first
    resp = http.post("openai", url, HEADERS, body(True, text), read_timeout=first, deadline=deadline,
                     limit="STREAM_FIRST_BYTE_TIMEOUT")
    return http.iter_body("openai", resp, first_byte_by=first_byte_by, idle_timeout=idle, deadline=deadline)


def test_a_stream_within_its_limits_arrives_whole(http, upstream):
    upstream.push_faults(Fault(drip=0.02))
    data = b"".join(open_stream(http, upstream.openai_base_url + "/chat/completions", first=1, idle=1, text=LONG))
    assert data.count(b"data: ") > 40 and b"[DONE]" in data


def test_slow_first_byte(http, upstream):
    upstream.push_faults(Fault(delay=3.0))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        list(open_stream(http, upstream.openai_base_url + "/chat/completions", first=0.3))
    assert time.monotonic() - started < 2.5
    assert "STREAM_FIRST_BYTE_TIMEOUT" in info.value.message and info.value.failure == "timeout"


def test_headers_and_first_chunk_share_one_first_byte_limit(http):
    """Headers at 0.3 s, first chunk at 0.6 s: a 0.45 s limit must fire, not restart after the headers."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            time.sleep(0.3)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            time.sleep(0.3)
            try:
                conn.sendall(b"6\r\ndata: \r\n")
                time.sleep(0.5)
            except OSError:
                pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
    with pytest.raises(UpstreamTimeout) as info:
        list(open_stream(http, url, first=0.45, idle=5))
    assert "STREAM_FIRST_BYTE_TIMEOUT" in info.value.message
    server.join(3)
    listener.close()


def test_idle_gap_mid_stream(http, upstream):
    upstream.push_faults(Fault(drip=1.0))
    chunks = open_stream(http, upstream.openai_base_url + "/chat/completions", first=1, idle=0.3, text=LONG)
    assert next(chunks).startswith(b"data: ")
    with pytest.raises(UpstreamTimeout) as info:
        list(chunks)
    assert "STREAM_IDLE_TIMEOUT" in info.value.message and info.value.failure == "timeout"


def test_total_deadline_catches_a_stream_that_keeps_dripping(http, upstream):
    upstream.push_faults(Fault(drip=0.1))
    chunks = open_stream(http, upstream.openai_base_url + "/chat/completions", first=1, idle=0.5, total=0.8,
                         text=LONG)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        list(chunks)
    assert time.monotonic() - started < 2.0
    assert "REQUEST_TIMEOUT" in info.value.message and info.value.failure == "deadline"


def test_total_deadline_catches_a_json_body_that_drips(http, upstream):
    upstream.push_faults(Fault(drip=0.4))  # four pieces: 1.2 s in all, each read well under its timeout
    deadline = deadline_from(0.6)
    resp = http.post("openai", upstream.openai_base_url + "/chat/completions", HEADERS, body(False),
                     read_timeout=5, deadline=deadline)
    with pytest.raises(UpstreamTimeout) as info:
        http.read_all("openai", resp, read_timeout=5, deadline=deadline)
    assert info.value.failure == "deadline" and "REQUEST_TIMEOUT" in info.value.message


def test_waiting_for_headers_is_bounded_by_the_deadline_too(http, upstream):
    upstream.push_faults(Fault(delay=3.0))
    with pytest.raises(UpstreamTimeout) as info:
        http.post("openai", upstream.openai_base_url + "/chat/completions", HEADERS, body(False),
                  read_timeout=30, deadline=deadline_from(0.3))
    assert info.value.failure == "deadline"


def test_an_exhausted_deadline_sends_nothing(http, upstream):
    with pytest.raises(UpstreamTimeout) as info:
        http.post("openai", upstream.openai_base_url + "/chat/completions", HEADERS, body(False),
                  read_timeout=30, deadline=time.monotonic() - 0.01)
    assert info.value.failure == "deadline" and upstream.count() == 0


def test_nothing_listening_is_a_connect_failure(http):
    with pytest.raises(UpstreamError) as info:
        http.post("openai", f"http://127.0.0.1:{free_port()}/v1/chat/completions", HEADERS, body(False),
                  read_timeout=1, deadline=deadline_from(2))
    assert info.value.failure == "connect-failure" and "127.0.0.1" not in info.value.message


def test_a_body_cut_short_is_a_reset(http, upstream):
    upstream.push_faults(Fault(cut_after=10))
    deadline = deadline_from(5)
    resp = http.post("openai", upstream.openai_base_url + "/chat/completions", HEADERS, body(False),
                     read_timeout=5, deadline=deadline)
    with pytest.raises(UpstreamError) as info:
        http.read_all("openai", resp, read_timeout=5, deadline=deadline)
    assert info.value.failure == "reset"


def test_a_stream_cut_short_is_a_reset(http, upstream):
    upstream.push_faults(Fault(cut_after=2))
    with pytest.raises(UpstreamError) as info:
        list(open_stream(http, upstream.openai_base_url + "/chat/completions", text=LONG))
    assert info.value.failure == "reset"


def _stalling_server(head: bytes) -> tuple[socket.socket, threading.Thread]:
    """A provider that sends ``head`` and six bytes of its body, then says nothing for a second."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(head + b"data: ")
            time.sleep(1.0)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    return listener, server


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 1000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
], ids=["sized", "until-close"])
def test_a_stream_that_is_not_chunked_stalls_into_the_idle_limit_not_into_an_end(http, head):
    """On a plain socket the wait for each read is the kernel's (SO_RCVTIMEO, the socket blocking: no poll
    before each receive); a read that comes back empty after it is a timeout, told apart from the end."""
    listener, server = _stalling_server(head)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/chat/completions"
    chunks = open_stream(http, url, first=1, idle=0.3)
    assert next(chunks) == b"data: "
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        list(chunks)
    assert 0.25 <= time.monotonic() - started < 1.0
    assert "STREAM_IDLE_TIMEOUT" in info.value.message and info.value.failure == "timeout"
    server.join(3)
    listener.close()


def test_a_streams_socket_waits_in_the_kernel_and_its_connection_serves_the_next_request(http, upstream):
    url = upstream.openai_base_url + "/chat/completions"
    upstream.push_faults(Fault(drip=0.02))  # one event per read
    deadline = deadline_from(10)
    resp = http.post("openai", url, HEADERS, body(True, LONG), read_timeout=5, deadline=deadline)
    sock = resp.connection.sock
    chunks = http.iter_body("openai", resp, first_byte_by=time.monotonic() + 5, idle_timeout=2.5,
                            deadline=deadline)
    next(chunks)
    next(chunks)  # the wait for the next read is now the idle limit's
    assert sock.gettimeout() is None  # blocking: Python polls before nothing
    sec, usec = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    assert abs(sec + usec / 1e6 - 2.5) < 0.02
    assert b"[DONE]" in b"".join(chunks)
    again = b"".join(open_stream(http, url))  # the same connection, Python's timeout set again by urllib3
    assert b"[DONE]" in again
    assert http.target(url)[0].num_connections == 1

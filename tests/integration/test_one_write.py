"""Upstream requests leave in one write when their body is bytes, and exactly as urllib3 sends them otherwise."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from app.patches.urllib3 import (
    OneWriteHTTPConnection,
    OneWriteHTTPConnectionPool,
    OneWriteHTTPSConnectionPool,
)
from app.providers.http import UpstreamHTTP


class Echo(BaseHTTPRequestHandler):
    """Answers each request with its method and body, read by Content-Length or chunked framing."""

    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding") == "chunked":
            parts = []
            while (size := int(self.rfile.readline().strip(), 16)) > 0:
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _answer(self) -> None:
        out = self.command.encode() + b" " + self._body()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class RecordingSocket:
    """The connection's socket, with every ``sendall`` recorded."""

    def __init__(self, sock: Any, writes: list[bytes]) -> None:
        self._sock, self.writes = sock, writes

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


WRITES: list[bytes] = []


class RecordedConnection(OneWriteHTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = RecordingSocket(self.sock, WRITES)  # type: ignore[assignment]


class RecordedPool(OneWriteHTTPConnectionPool):
    ConnectionCls = RecordedConnection


@pytest.fixture
def pool() -> Iterator[RecordedPool]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    WRITES.clear()
    p = RecordedPool("127.0.0.1", server.server_address[1], maxsize=1, retries=False)
    try:
        yield p
    finally:
        p.close()
        server.shutdown()
        server.server_close()


def test_a_bytes_body_leaves_with_its_head_in_one_write(pool: RecordedPool) -> None:
    body = b'{"model": "m", "messages": []}'
    resp = pool.urlopen("POST", "/v1/chat", body=body, headers={"content-type": "application/json"})
    assert resp.status == 200 and resp.data == b"POST " + body
    assert len(WRITES) == 1
    head, _, sent_body = WRITES[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert f"content-length: {len(body)}".encode() in head.lower()
    assert sent_body == body


def test_each_request_on_a_kept_alive_connection_is_one_write(pool: RecordedPool) -> None:
    for i in range(3):
        body = b"body %d" % i
        assert pool.urlopen("POST", "/", body=body).data == b"POST " + body
    assert len(WRITES) == 3
    assert pool.num_connections == 1


def test_without_a_body_the_head_still_goes(pool: RecordedPool) -> None:
    assert pool.urlopen("GET", "/").data == b"GET "
    assert pool.urlopen("POST", "/", body=b"").data == b"POST "
    assert len(WRITES) == 2
    assert all(w.endswith(b"\r\n\r\n") for w in WRITES)


def test_an_iterable_body_is_sent_as_urllib3_sends_it(pool: RecordedPool) -> None:
    resp = pool.urlopen("POST", "/", body=iter([b"part one, ", b"part two"]), chunked=True)
    assert resp.data == b"POST part one, part two"
    assert len(WRITES) == 4  # the head, two framed chunks, the last chunk: nothing held back
    assert WRITES[0].endswith(b"\r\n\r\n")


def test_a_failed_send_leaves_nothing_held_for_the_next_request() -> None:
    conn = OneWriteHTTPConnection("127.0.0.1", 9)
    conn.auto_open = 0  # http.client raises NotConnected instead of connecting at the first send
    with pytest.raises(http.client.NotConnected):
        conn.request("POST", "/", body=b"x")
    assert conn._head is None and conn._joining is False


def test_the_upstream_pools_are_one_write_pools() -> None:
    http = UpstreamHTTP(connect_timeout=1, pool_maxsize=4)
    assert isinstance(http.target("http://127.0.0.1:1/v1/chat/completions")[0], OneWriteHTTPConnectionPool)
    assert isinstance(http.target("https://api.example.com/v1/messages")[0], OneWriteHTTPSConnectionPool)
    assert urllib3.PoolManager().pool_classes_by_scheme["http"] is urllib3.HTTPConnectionPool  # others untouched

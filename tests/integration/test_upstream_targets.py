"""UpstreamHTTP sends each request through the PoolManager's pool for its origin, looked up once per URL.

Why: the lookup (URL parsing, pool key) was about 5% of a worker's CPU on a
cache miss, so ``UpstreamHTTP.target`` remembers it; these tests prove the
request on the wire is the same (path, query, Host), keep-alive connections
are reused, and a pool that has been closed is replaced, never used.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.providers import http as upstream_http
from app.providers.http import UpstreamHTTP

pytestmark = pytest.mark.timeout(20)


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as providers do
    seen: list[tuple[str, str, int]] = []  # (request target, Host header, client port)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        Recorder.seen.append((self.path, self.headers["host"], self.client_address[1]))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def post(http: UpstreamHTTP, url: str) -> bytes:
    resp = http.post("openai", url, {"content-type": "application/json"}, b"{}", read_timeout=5.0,
                     deadline=upstream_http.time.monotonic() + 5.0)
    return http.read_all("openai", resp, read_timeout=5.0, deadline=upstream_http.time.monotonic() + 5.0)


def test_the_request_on_the_wire_keeps_path_query_and_host(server):
    http = UpstreamHTTP(connect_timeout=1.0, pool_maxsize=2)
    assert post(http, server + "/v1/chat/completions?api-version=2024-06-01") == b'{"ok": true}'
    target, host, _ = Recorder.seen[0]
    assert target == "/v1/chat/completions?api-version=2024-06-01"
    assert host == server.removeprefix("http://")


def test_one_pool_and_one_kept_alive_connection_for_repeated_requests(server):
    http = UpstreamHTTP(connect_timeout=1.0, pool_maxsize=2)
    for _ in range(3):
        post(http, server + "/v1/chat/completions")
    pool, _ = http.target(server + "/v1/chat/completions")
    assert pool is http.pool.connection_from_url(server)  # the manager's own pool, not a private one
    assert pool.num_connections == 1
    assert len({port for _, _, port in Recorder.seen}) == 1


def test_a_closed_pool_is_replaced(server):
    http = UpstreamHTTP(connect_timeout=1.0, pool_maxsize=2)
    post(http, server + "/v1/chat/completions")
    old, _ = http.target(server + "/v1/chat/completions")
    http.pool.clear()  # a manager that disposes of its pools (urllib3 1.x) drops and closes them
    old.close()
    assert post(http, server + "/v1/chat/completions") == b'{"ok": true}'
    new, _ = http.target(server + "/v1/chat/completions")
    assert new is not old and new.pool is not None


def test_remembered_urls_are_bounded(server, monkeypatch):
    monkeypatch.setattr(upstream_http, "MAX_REMEMBERED_URLS", 3)
    http = UpstreamHTTP(connect_timeout=1.0, pool_maxsize=2)
    for i in range(10):
        post(http, f"{server}/v1/chat/completions?n={i}")
    assert len(http._targets) <= 3
    assert [target for target, _, _ in Recorder.seen] == [f"/v1/chat/completions?n={i}" for i in range(10)]

"""Hygiene at the edge: request size limits, nothing the client sends can steer upstream, keys from files."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import urllib3

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


class Trap:
    """A listener standing in for another host: it counts anyone who connects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def gw(emulator, tmp_path_factory):
    """Provider keys only through *_FILE variables, as Docker and Kubernetes secrets deliver them."""
    d = tmp_path_factory.mktemp("secrets")
    (d / "openai").write_text(OPENAI_KEY + "\n")
    (d / "anthropic").write_text(ANTHROPIC_KEY)
    gateway = GatewayProcess({"OPENAI_BASE_URL": emulator.openai_base_url,
                              "ANTHROPIC_BASE_URL": emulator.anthropic_base_url,
                              "OPENAI_API_KEY_FILE": str(d / "openai"),
                              "ANTHROPIC_API_KEY_FILE": str(d / "anthropic"),
                              "MAX_REQUEST_BYTES": "4096"}).start()
    yield gateway
    gateway.stop()


def chat(gw, path: str, body: dict, headers: dict | None = None) -> urllib3.BaseHTTPResponse:
    return http.request("POST", gw.url + path, body=json.dumps(body).encode(),
                        headers={"content-type": "application/json", **(headers or {})})


def test_provider_keys_from_files_reach_the_providers(gw, upstream):
    resp = chat(gw, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200, resp.data
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    resp = chat(gw, "/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 10,
                                     "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200, resp.data
    assert upstream.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY


def test_an_unreadable_key_file_stops_start_up_with_one_line(emulator, tmp_path):
    gateway = GatewayProcess({"OPENAI_API_KEY_FILE": str(tmp_path / "nope")})
    gateway.start(wait=False)
    assert gateway.proc.wait(30) == 2
    assert gateway.logs().strip() == (f"llm-edge-agent: configuration error: OPENAI_API_KEY_FILE: cannot read "
                                      f"'{tmp_path / 'nope'}' (No such file or directory)")


def test_nothing_a_client_sends_chooses_the_upstream_host_or_headers(gw, upstream):
    # anthropic-beta and anthropic-version are the caller's to choose (docs/api.md, "Relay and translation"):
    # tests/integration/test_relay.py checks they go on; openai-organization/-project only when allowed.
    trap = Trap()
    try:
        steering = {"host": trap.url[7:], "x-forwarded-host": trap.url[7:], "x-forwarded-proto": "http",
                    "x-upstream-url": trap.url, "x-base-url": trap.url, "openai-organization": "org-evil",
                    "openai-project": "proj-evil", "cookie": "session=evil", "x-api-key": "sk-client-chosen",
                    "authorization": "Bearer sk-client-chosen",
                    "proxy-authorization": "Basic evil", "x-llm-edge-upstream": trap.url}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                "base_url": trap.url, "api_base": trap.url, "api_key": "sk-client-chosen", "extra_headers": {"x": "y"}}
        resp = chat(gw, "/v1/chat/completions", body, steering)
        assert resp.status in (200, 400), resp.data
        for model in (trap.url + "/v1", f"{trap.url}/gpt-4o-mini", "openai@" + trap.url[7:], "../" + trap.url):
            resp = chat(gw, "/v1/chat/completions", {**body, "model": model}, steering)
            assert resp.status in (400, 404), (model, resp.status)
        resp = chat(gw, "/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 10,
                                         "messages": [{"role": "user", "content": "hi"}]}, steering)
        assert resp.status == 200
        assert trap.connections == 0, "no request ever left for a host the client named"
        for sent in upstream.requests:
            names = {k.lower() for k in sent.headers}
            assert not names & {"x-forwarded-host", "x-upstream-url", "x-base-url", "openai-organization",
                                "openai-project", "cookie", "proxy-authorization",
                                "x-llm-edge-upstream"}
            assert "sk-client-chosen" not in json.dumps(sent.headers) and "evil" not in json.dumps(sent.headers)
            assert sent.headers.get("anthropic-version", "2023-06-01") == "2023-06-01"
            assert "127.0.0.1" in sent.headers.get("host", "127.0.0.1") and trap.url[7:] != sent.headers.get("host")
    finally:
        trap.close()


def _raw(gw, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(data)
        return s.recv(200)


def test_gunicorn_refuses_oversized_request_lines_and_headers(gw):
    assert _raw(gw, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    assert _raw(gw, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    big = b"X-Big: " + b"v" * 17000 + b"\r\n"
    assert _raw(gw, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n").startswith(b"HTTP/1.1 431")
    assert _raw(gw, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_bodies_over_max_request_bytes_are_413(gw, upstream):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
    resp = chat(gw, "/v1/chat/completions", body)
    assert resp.status == 413 and json.loads(resp.data)["error"]["code"] == "request_too_large"
    assert upstream.count() == 0

"""Behind a load balancer: keep-alive outlives common LB idle timeouts, and the client address comes from
X-Forwarded-For only when the peer is a trusted proxy (FORWARDED_ALLOW_IPS)."""

from __future__ import annotations

import json
import socket
import time

import pytest
import urllib3

from tests.conftest import provider_env
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(60)

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n"


def access_lines(gateway) -> list[dict]:
    lines = []
    for line in gateway.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "request":
            lines.append(entry)
    return lines


def ask_as(gateway, forwarded_for: str, request_id: str) -> None:
    http = urllib3.PoolManager(retries=False, timeout=5)
    resp = http.request("GET", gateway.url + "/v1/models",
                        headers={"x-forwarded-for": forwarded_for, "x-request-id": request_id})
    assert resp.status == 200


def logged_client(gateway, request_id: str) -> str:
    for _ in range(50):
        for entry in access_lines(gateway):
            if entry.get("request_id") == request_id:
                return entry["client_addr"]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def exchange(sock: socket.socket) -> bytes:
    """One /health/live request and its whole answer on an open connection."""
    sock.sendall(REQUEST)
    answer = b""
    while not answer.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {answer!r}"
        answer += chunk
    return answer


def test_an_idle_keep_alive_connection_is_kept_longer_than_gunicorns_default(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        assert exchange(sock).startswith(b"HTTP/1.1 200")
        time.sleep(3)  # gunicorn's own default keepalive (2 s) would have closed it by now
        assert exchange(sock).startswith(b"HTTP/1.1 200")


def test_forwarded_for_is_believed_from_a_trusted_proxy(gateway):
    """The default FORWARDED_ALLOW_IPS trusts 127.0.0.1, where this test connects from."""
    ask_as(gateway, "6.6.6.6, 203.0.113.7", "xff-trusted")
    assert logged_client(gateway, "xff-trusted") == "203.0.113.7"


def test_forwarded_for_is_ignored_from_anyone_else(start_gateway):
    gw = start_gateway({"FORWARDED_ALLOW_IPS": "10.20.30.40"})
    ask_as(gw, "203.0.113.7", "xff-untrusted")
    assert logged_client(gw, "xff-untrusted") == "127.0.0.1"


def test_a_bad_allow_list_stops_start_up(emulator):
    gw = GatewayProcess({**provider_env(emulator), "FORWARDED_ALLOW_IPS": "10.0.0.1/8"}).start(wait=False)
    try:
        assert gw.proc.wait(20) != 0
        assert "10.0.0.1/8" in gw.logs()  # named by gunicorn's own check, or by ours
    finally:
        gw.stop()

"""Request bodies sent with ``Transfer-Encoding: chunked`` (curl's chunked uploads, Go and Node streaming bodies,
HTTP/2 clients behind proxies that drop Content-Length): read, limited by MAX_REQUEST_BYTES, never a 5xx.

Framing as RFC 9112 section 7.1 writes it: hex size, CRLF, data, CRLF, ..., a zero-size chunk, CRLF.
"""

from __future__ import annotations

import json
import socket

import pytest

pytestmark = pytest.mark.timeout(60)


def chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` cut into chunks of ``size`` bytes, as curl -H 'Transfer-Encoding: chunked' sends it."""
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def post_raw(gw, path: str, framed_body: bytes, headers: str = "") -> tuple[int, dict, bytes]:
    """One POST on a fresh connection with a chunked body; the status, headers and whole body of the answer."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                      f"Transfer-Encoding: chunked\r\nConnection: close\r\n{headers}\r\n").encode() + framed_body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    if fields.get("Transfer-Encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


OPENAI = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello in chunks"}]}
ANTHROPIC = {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
             "messages": [{"role": "user", "content": "hello in chunks"}]}


@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", OPENAI), ("/v1/messages", ANTHROPIC)])
def test_a_chunked_body_is_read_like_any_other(gateway, upstream, path, body):
    status, _, answer = post_raw(gateway, path, chunked(json.dumps(body).encode()))
    assert status == 200, answer
    text = json.loads(answer)
    got = text["choices"][0]["message"]["content"] if path.endswith("completions") else text["content"][0]["text"]
    assert "hello in chunks" in got


def test_a_chunked_stream_request_streams(gateway, upstream):
    status, headers, answer = post_raw(gateway, "/v1/chat/completions", chunked(json.dumps({**OPENAI,
                                                                                           "stream": True}).encode()))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert answer.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_chunked_body_over_the_limit_is_a_413_in_the_callers_shape(gateway, upstream, path):
    # The module's gateway has MAX_REQUEST_BYTES=65536 (tests/conftest.py).
    big = {**OPENAI, "messages": [{"role": "user", "content": "x" * 70_000}]}
    status, _, answer = post_raw(gateway, path, chunked(json.dumps(big).encode(), size=4096))
    assert status == 413, answer
    error = json.loads(answer)
    assert ("request_too_large" in json.dumps(error)), error
    assert (error.get("type") == "error") == (path == "/v1/messages")
    assert upstream.requests == [], "nothing went upstream"


def test_a_malformed_chunk_is_a_400_not_a_5xx(gateway, upstream):
    framed = b"5\r\n{\"mod\r\nzz\r\nnot hex\r\n0\r\n\r\n"
    status, _, answer = post_raw(gateway, "/v1/chat/completions", framed)
    assert status == 400, answer
    assert json.loads(answer)["error"]["param"] == "body"

"""gunicorn's answers with head and first chunk in one write: the same bytes on the wire, fewer writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gunicorn import util
from gunicorn.http import wsgi

from app.patches import gunicorn as response_write
from tests.support.processes import after_gunicorn_conf


class Req:
    def __init__(self, method: str = "POST", version: tuple[int, int] = (1, 1)) -> None:
        self.method, self.version = method, version

    def should_close(self) -> bool:
        return self.version < (1, 1)


class Sock:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


class Cfg:
    protocol = "http"


def answer(write: Any, req: Req, status: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> list[bytes]:
    """What one response puts on the socket, write by write, with ``write`` as ``Response.write``."""
    sock = Sock()
    resp = wsgi.Response(req, sock, Cfg())
    resp.start_response(status, headers)
    for chunk in chunks:
        write(resp, chunk)
    resp.close()
    return sock.writes


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda *a: "Thu, 26 Nov 2026 21:00:00 GMT")


BODY = b'{"id": "chatcmpl-1", "choices": []}'
JSON = [("content-type", "application/json"), ("content-length", str(len(BODY)))]

CASES = {
    # name: (request, status, headers, chunks, writes saved)
    "whole answer": (Req(), "200 OK", JSON, [BODY], 1),
    "HTTP/1.0": (Req(version=(1, 0)), "200 OK", JSON, [BODY], 1),
    "error answer": (Req(), "429 Too Many Requests", JSON, [BODY], 1),
    "stream (chunked)": (Req(), "200 OK", [("content-type", "text/event-stream")],
                         [b"data: one\n\n", b"data: two\n\n"], 1),
    "empty chunk first": (Req(), "200 OK", [("content-type", "text/event-stream")], [b"", b"data: x\n\n"], 0),
    "HEAD": (Req("HEAD"), "200 OK", JSON, [BODY], 0),
    "204": (Req(), "204 No Content", [], [b""], 0),
    "body longer than its length": (Req(), "200 OK", [("content-length", "5")], [BODY], 0),
    "no body": (Req(), "200 OK", [("content-length", "0")], [], 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_same_bytes_as_gunicorn_in_fewer_writes(name: str) -> None:
    req, status, headers, chunks, saved = CASES[name]
    theirs = answer(response_write.GUNICORN_WRITE, req, status, headers, chunks)
    ours = answer(response_write.write, req, status, headers, chunks)
    assert b"".join(ours) == b"".join(theirs)
    assert len(ours) == len(theirs) - saved
    if saved:
        assert ours[0].startswith(b"HTTP/1.") and chunks[0] in ours[0]


class GoneSock:
    def sendall(self, data: bytes) -> None:
        raise BrokenPipeError("client gone")


@pytest.mark.parametrize("write", [response_write.GUNICORN_WRITE, response_write.write], ids=["gunicorn", "ours"])
def test_a_client_gone_before_the_head_leaves_it_unsent(write: Any) -> None:
    resp = wsgi.Response(Req(), GoneSock(), Cfg())
    resp.start_response("200 OK", JSON)
    with pytest.raises(BrokenPipeError):
        write(resp, BODY)
    assert resp.headers_sent is False  # gunicorn's worker then closes the connection, as before


def test_other_response_classes_keep_their_own_write() -> None:
    class Framed(wsgi.Response):  # as gunicorn's HTTP/2 response: its own framing of the same calls
        def _emit_body(self, data: bytes) -> None:
            self.sock.sendall(b"[" + data + b"]")

    sock = Sock()
    resp = Framed(Req(), sock, Cfg())
    resp.start_response("200 OK", JSON)
    response_write.write(resp, BODY)
    assert sock.writes[1] == b"[" + BODY + b"]"


def test_install_uses_it_for_every_response(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi.Response, "write", response_write.GUNICORN_WRITE)
    assert response_write.install() is True
    assert wsgi.Response.write is response_write.write
    sock = Sock()
    resp = wsgi.Response(Req(), sock, Cfg())
    resp.start_response("200 OK", JSON)(BODY)  # start_response hands back the write the server calls
    assert len(sock.writes) == 1


def test_install_leaves_an_unknown_gunicorn_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unknown:
        def __init__(self, req: Any, sock: Any, cfg: Any) -> None:
            self.sock = sock

        def write(self, arg: bytes) -> None:
            pass

    monkeypatch.setattr(wsgi, "Response", Unknown)
    assert response_write.install() is False
    assert Unknown.write is not response_write.write


def test_gunicorn_conf_installs_it_for_every_worker(tmp_path: Path) -> None:
    """gunicorn.conf.py runs in the master before the fork: gunicorn's Response must write with ours there."""
    done = after_gunicorn_conf("from gunicorn.http import wsgi\nfrom app.patches import gunicorn as response_write\n"
                               "assert wsgi.Response.write is response_write.write", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr

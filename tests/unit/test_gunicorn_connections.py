"""The connection patches' pieces that need no gunicorn: lingering closes, fitting the open-file limit, settings."""

from __future__ import annotations

import selectors
import socket
import threading

import pytest

from app.config.settings import ConfigError, Settings
from app.patches import gunicorn_connections as gc


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def test_a_lingering_close_half_closes_at_once_and_closes_at_the_peers_eof():
    poller = selectors.DefaultSelector()
    linger = gc.Lingerer(poller, limit=10)
    ours, theirs = _pair()
    linger.add(ours)
    assert theirs.recv(10) == b""  # our FIN came at once, nothing blocked
    assert linger.open == 1
    theirs.sendall(b"late bytes")
    for key, _ in poller.select(1):
        key.data(key.fileobj)
    assert linger.open == 1  # drained, still waiting for the peer's close
    theirs.close()
    for key, _ in poller.select(1):
        key.data(key.fileobj)
    assert linger.open == 0 and ours.fileno() == -1


def test_a_lingering_close_ends_at_its_deadline_or_past_the_limit():
    poller = selectors.DefaultSelector()
    linger = gc.Lingerer(poller, limit=1)
    first, peer1 = _pair()
    second, peer2 = _pair()
    linger.add(first)
    linger.add(second)  # over the limit: closed at once
    assert second.fileno() == -1 and linger.open == 1
    linger.expire(now=0.0)
    assert linger.open == 1
    linger.expire(now=float("inf"))
    assert linger.open == 0 and first.fileno() == -1
    peer1.close()
    peer2.close()


def test_worker_connections_fit_the_open_file_limit(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _: (2048, 2048))
    assert gc.fit_worker_connections(4096, 768) == 2048 - 768 - 256
    assert gc.fit_worker_connections(500, 100) == 500


def test_connection_settings_and_their_bounds():
    s = Settings.from_env({})
    assert (s.gunicorn_worker_connections, s.gunicorn_header_timeout) == (4096, 5.0)
    s = Settings.from_env({"GUNICORN_WORKER_CONNECTIONS": "10000", "GUNICORN_HEADER_TIMEOUT": "2.5"})
    assert (s.gunicorn_worker_connections, s.gunicorn_header_timeout) == (10000, 2.5)
    with pytest.raises(ConfigError, match=r"GUNICORN_WORKER_CONNECTIONS .* must be above GUNICORN_THREADS"):
        Settings.from_env({"GUNICORN_WORKER_CONNECTIONS": "768"})
    with pytest.raises(ConfigError, match="GUNICORN_HEADER_TIMEOUT"):
        Settings.from_env({"GUNICORN_HEADER_TIMEOUT": "0"})


def test_install_is_idempotent_and_patches_gthread():
    from gunicorn.workers import gthread

    gc.install()
    patched = gthread.TConn.close
    gc.install()
    assert gthread.TConn.close is patched
    assert tuple(gc.WRITTEN_FOR) == ("gunicorn", "27.0.1")


def _parse_head(sock: socket.socket):  # type: ignore[no-untyped-def]
    from gunicorn.config import Config
    from gunicorn.http import RequestParser

    return next(RequestParser(Config(), sock, ("127.0.0.1", 1)))


def test_a_head_already_there_is_read_without_arming_a_timeout(monkeypatch):
    """Each settimeout is a system call, and a receive under one is a poll too: three GIL hand-offs a request
    saved when the head has arrived, as a keep-alive request has when a thread reads it."""
    gc.install()
    calls: list[object] = []
    monkeypatch.setattr(socket.socket, "settimeout", lambda self, value: calls.append(value), raising=False)
    client, server = _pair()
    with client, server:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _parse_head(server).path == "/health"
        assert calls == []
        late = b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n"  # nothing yet: the deadline is armed, then disarmed
        monkeypatch.undo()
        threading.Timer(0.2, client.sendall, (late,)).start()
        assert _parse_head(server).path == "/late"
        assert server.gettimeout() is None

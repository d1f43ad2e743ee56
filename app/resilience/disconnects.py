"""Notice a client hanging up mid-stream at once, not at the next write.

A gthread worker only learns that a streaming client left when writing to it
fails, and nothing is written while the provider is quiet: the thread, and an
upstream connection generating tokens nobody reads, could be held for a whole
``STREAM_IDLE_TIMEOUT``. One daemon thread per worker therefore watches the
client sockets of the streams in flight (``environ["gunicorn.socket"]``): a
socket that turns readable and peeks as end-of-file is a client that hung up,
and its stream's ``on_gone`` callback aborts the upstream read (nginx does
the same check, ``recv(MSG_PEEK)``, for ``proxy_ignore_client_abort off``).
A socket that turns readable with data (a pipelined request, TLS records) is
simply no longer watched; the write path still catches that client.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("llm_edge.disconnects")

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class ClientGone(Exception):
    """The client hung up mid-stream; not an upstream failure, nothing to answer."""


@dataclass(eq=False, slots=True)
class _Watch:
    sock: socket.socket
    on_gone: Callable[[], None]
    fd: int = field(default=-1)


def _hung_up(sock: socket.socket) -> bool:
    """True when the peer closed: readable and the next byte is end-of-file (TLS: the raw socket's)."""
    try:
        return socket.socket.recv(sock, 1, _PEEK) == b""  # bypasses SSLSocket.recv, which refuses flags
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset by peer, or closed under us


class DisconnectWatcher:
    """One per worker process; ``watch()`` a stream's client socket for as long as the stream runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[bool, _Watch]] = []  # (add?, watch), applied by the watcher thread
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    def watch(self, sock: socket.socket | None, on_gone: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_gone`` (from the watcher thread) if the client hangs up; returns the function to stop."""
        if sock is None:
            return _nothing
        try:
            fd = sock.fileno()
        except OSError:
            return _nothing
        if fd < 0:
            return _nothing
        w = _Watch(sock, on_gone, fd)
        self._submit(True, w)
        return lambda: self._submit(False, w)

    def _submit(self, add: bool, w: _Watch) -> None:
        with self._lock:
            if self._thread is None:
                self._start()
            self._pending.append((add, w))
            wake = self._wake_w
        assert wake is not None
        try:
            wake.send(b"\0")
        except BlockingIOError:
            pass  # a wake-up is already pending

    def _start(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="disconnect-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        assert self._wake_r is not None
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        watched: dict[int, _Watch] = {}
        while True:
            for key, _ in sel.select():
                w = key.data
                if w is None:
                    self._drain_wake()
                    continue
                if watched.get(w.fd) is not w:
                    continue
                sel.unregister(w.fd)
                del watched[w.fd]
                if _hung_up(w.sock):
                    try:
                        w.on_gone()
                    except Exception:
                        log.exception("aborting a stream whose client left failed")
            with self._lock:
                pending, self._pending = self._pending, []
            for add, w in pending:
                current = watched.get(w.fd)
                if add:
                    if current is not None:  # fd reused: the old owner is gone already
                        sel.unregister(w.fd)
                    try:
                        sel.register(w.fd, selectors.EVENT_READ, w)
                    except (OSError, ValueError):
                        continue  # closed before we got to it
                    watched[w.fd] = w
                elif current is w:
                    del watched[w.fd]
                    try:
                        sel.unregister(w.fd)
                    except (OSError, KeyError, ValueError):
                        pass

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass


def _nothing() -> None:
    return None

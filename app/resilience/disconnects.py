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

Streams register their socket straight into the watcher's epoll set (the
kernel makes that safe across threads), so a stream costs two ``epoll_ctl``
calls and the watcher thread wakes only when a client actually does
something. Without epoll (not Linux) nothing is watched and a hang-up is
noticed at the next write, as before.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("llm_edge.disconnects")

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_GONE, _DATA, _NOTHING = "gone", "data", "nothing"
_EVENTS = select.EPOLLIN | select.EPOLLRDHUP if hasattr(select, "EPOLLIN") else 0


# How a request whose client hung up is recorded: the status (nginx's "client closed request") and the
# error label of the access line, the request metrics and a cut attempt's span.
CLIENT_GONE_STATUS = 499
CLIENT_GONE = "client_disconnected"


class ClientGone(Exception):
    """The client hung up mid-stream; not an upstream failure, nothing to answer."""


def _peek(sock: socket.socket) -> str:
    """What a readable client socket holds: end-of-file (gone), bytes (data), or nothing after all."""
    try:
        # socket.socket.recv on an SSLSocket reads the raw TCP stream (SSLSocket.recv refuses flags).
        return _GONE if socket.socket.recv(sock, 1, _PEEK) == b"" else _DATA
    except (BlockingIOError, InterruptedError):
        return _NOTHING
    except OSError:
        return _GONE  # reset by the peer, or closed under us


def _nothing() -> None:
    return None


def _unregister(epoll: select.epoll, fd: int) -> None:
    try:
        epoll.unregister(fd)
    except OSError:
        pass  # the socket was closed already, which removed it


class DisconnectWatcher:
    """One per worker process; ``watch()`` a stream's client socket for as long as the stream runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[socket.socket, Callable[[], None]]] = {}
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket | None, on_gone: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_gone`` (from the watcher thread) if the client hangs up; returns the function to stop."""
        if sock is None or not hasattr(select, "epoll"):
            return _nothing
        try:
            fd = sock.fileno()
        except OSError:
            return _nothing
        if fd < 0:
            return _nothing
        entry = (sock, on_gone)
        with self._lock:
            if self._epoll is None:
                self._start()
            stale = self._watched.get(fd)  # its socket closed unwatched: replace it
            self._watched[fd] = entry
        epoll = self._epoll
        assert epoll is not None
        # epoll_ctl outside the lock: it lets go of the GIL, and a thread waiting for the GIL to come back
        # while holding the lock would make every other stream's watch and stop wait behind it.
        if stale is not None:
            _unregister(epoll, fd)
        try:
            epoll.register(fd, _EVENTS)
        except OSError:
            with self._lock:
                if self._watched.get(fd) is entry:
                    del self._watched[fd]
            return _nothing

        def stop() -> None:
            with self._lock:
                if self._watched.get(fd) is not entry:
                    return
                del self._watched[fd]
            _unregister(epoll, fd)

        return stop

    def _start(self) -> None:
        self._epoll = select.epoll()
        self._thread = threading.Thread(target=self._run, name="disconnect-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._epoll is not None
        while True:
            for fd, _ in self._epoll.poll():
                entry = self._watched.get(fd)
                if entry is None:
                    continue
                what = _peek(entry[0])
                if what == _NOTHING:
                    continue  # spurious
                with self._lock:  # held across epoll_ctl here, on this rare path: a watch of the fd waits
                    if self._watched.get(fd) is not entry:
                        continue  # stopped meanwhile, or an event for a socket since replaced at this fd
                    del self._watched[fd]
                    _unregister(self._epoll, fd)
                if what == _GONE:
                    try:
                        entry[1]()
                    except Exception:
                        log.exception("aborting a stream whose client left failed")

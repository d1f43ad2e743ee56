"""Connection handling fixes for gunicorn's gthread worker (gunicorn 27.0.1).

Three defects of ``gunicorn.workers.gthread`` that settings cannot fix:

1. **Graceful closes block the event loop.** A connection answered with
   ``Connection: close`` is closed in ``ThreadWorker.finish_request``, on the
   worker's main thread, by ``util.close_graceful``: it half-closes and then
   *waits* up to 2 s for the client to close too. Meanwhile the worker accepts
   nothing and hands no finished request back, so 16 clients that read their
   answer and keep the socket open (a load balancer's health checker does)
   stall every request of the node for seconds. Here the half-closed socket
   goes onto the worker's poller instead ("lingering close", as nginx does):
   its bytes are drained when they come, and it is closed at EOF, after
   ``LINGER_SECONDS`` or after ``LINGER_MAX_BYTES``, without blocking anyone.

2. **No timeout for a request head or a TLS handshake.** Once a connection has
   sent a first byte, a thread reads the head with a blocking socket and no
   deadline (and the TLS handshake likewise): every slowloris client pins a
   thread until the node has none left. Here the head must be complete within
   ``header_timeout`` seconds of its first byte, and a TLS handshake within
   ``header_timeout`` seconds; otherwise the connection is closed (debug log).
   Bodies and responses are not affected: the deadline is disarmed as soon as
   the head is parsed. On a plain socket, what has already arrived is taken
   first without a timeout (``MSG_DONTWAIT``): arming one costs a system call
   to set it, a poll before the receive and one to unset it, each letting go
   of the GIL, and a keep-alive request is read only once it has arrived.

3. **A framing error in an unread body produces a stray answer.** When the
   application answered without reading a chunked body, gunicorn drains it
   afterwards (``_keepalive_after``); a malformed chunk there raised out of
   ``handle`` into ``handle_error``, which wrote a *second* response (400) on a
   connection whose answer had already gone out, and a client pipelining
   requests took it as the answer to its next one. Here any error while
   draining ends the connection silently: the answer is complete, where the
   next request starts is unknown.

``install()`` is idempotent; ``set_header_timeout()`` is called from
gunicorn.conf.py (the master), so the forked workers inherit the value.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from functools import partial
from typing import Any

WRITTEN_FOR = ("gunicorn", "27.0.1")

log = logging.getLogger("gunicorn.error")

LINGER_SECONDS = 2.0  # as util.close_graceful
LINGER_MAX_BYTES = 65536  # as util.close_graceful
DEFAULT_HEADER_TIMEOUT = 5.0

_state: dict[str, Any] = {"installed": False, "header_timeout": DEFAULT_HEADER_TIMEOUT, "linger": None}


def set_header_timeout(seconds: float) -> None:
    """Seconds a client has for a request head (from its first byte) and for a TLS handshake."""
    if not seconds > 0:
        raise ValueError("the header timeout must be above 0")
    _state["header_timeout"] = float(seconds)


# Descriptors a worker needs besides its client connections, per thread (its upstream connection while a
# request is in progress) and in all (listeners, Redis, logs, metrics files, the lingering closes' slack).
_FILES_RESERVED = 256


def fit_worker_connections(wanted: int, threads: int) -> int:
    """``wanted``, or fewer if the open-file limit cannot hold them (after raising the soft limit to the hard).

    gunicorn's gthread ``accept()`` re-raises EMFILE and the worker dies, so a worker must never be allowed
    more connections than it can open files for.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    room = soft - threads - _FILES_RESERVED
    fitted = max(min(wanted, room), threads + 1)
    if fitted < wanted:
        log.warning("GUNICORN_WORKER_CONNECTIONS=%d does not fit the open-file limit (%d): each worker "
                    "holds at most %d connections; raise `ulimit -n` to hold more", wanted, soft, fitted)
    return fitted


def header_timeout() -> float:
    return float(_state["header_timeout"])


class HeadTimeout(Exception):
    """A request head or TLS handshake did not complete within the header timeout."""


class Lingerer:
    """Half-closed sockets waiting, on the worker's poller, for their client to close."""

    def __init__(self, poller: selectors.BaseSelector, limit: int) -> None:
        self.poller = poller
        self.limit = max(1, limit)
        self.entries: deque[list[Any]] = deque()  # [deadline, sock, drained, open], deadlines in order
        self.open = 0

    def add(self, sock: socket.socket) -> None:
        """Main thread only. Half-close ``sock`` and close it later; never blocks."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            _close(sock)
            return
        if self.open >= self.limit:
            _close(sock)  # the FIN went out; an RST now is the peer's own doing
            return
        entry = [time.monotonic() + LINGER_SECONDS, sock, 0, True]
        try:
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._readable, entry))
        except (OSError, ValueError, KeyError):
            _close(sock)
            return
        self.entries.append(entry)
        self.open += 1

    def _readable(self, entry: list[Any], _fileobj: Any) -> None:
        sock = entry[1]
        try:
            # The raw TCP stream, also under TLS: these bytes are only thrown away.
            data = socket.socket.recv(sock, 16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        entry[2] += len(data)
        if not data or entry[2] >= LINGER_MAX_BYTES:
            self._finish(entry)

    def _finish(self, entry: list[Any]) -> None:
        if not entry[3]:
            return
        entry[3] = False
        self.open -= 1
        try:
            self.poller.unregister(entry[1])
        except (OSError, ValueError, KeyError):
            pass
        _close(entry[1])

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self.entries and (not self.entries[0][3] or self.entries[0][0] <= now):
            self._finish(self.entries.popleft())

    def close_all(self) -> None:
        while self.entries:
            self._finish(self.entries.popleft())


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def install() -> bool:
    """Patch gunicorn's gthread worker and HTTP parser (see the module docstring); idempotent."""
    if _state["installed"]:
        return True
    from gunicorn.http import parser as gparser
    from gunicorn.http import unreader as gunreader
    from gunicorn.workers import gthread

    worker_cls = gthread.ThreadWorker
    conn_cls = gthread.TConn

    # 1. Lingering close on the poller instead of close_graceful on the main thread.
    original_run = worker_cls.run
    original_murder_pending = worker_cls.murder_pending
    original_close = conn_cls.close

    def run(self: Any) -> None:
        _state["linger"] = Lingerer(self.poller, self.cfg.worker_connections)
        try:
            original_run(self)
        finally:
            linger, _state["linger"] = _state["linger"], None
            linger.close_all()

    def murder_pending(self: Any) -> None:
        original_murder_pending(self)
        linger = _state["linger"]
        if linger is not None:
            linger.expire()

    def close(self: Any, graceful: bool = False) -> None:
        linger = _state["linger"]
        if graceful and linger is not None and threading.current_thread() is threading.main_thread():
            linger.add(self.sock)
        else:
            original_close(self, graceful)

    # 2. A deadline for the TLS handshake and for the request head.
    original_init = conn_cls.init
    original_next = gparser.Parser.__next__
    original_chunk = gunreader.SocketUnreader.chunk
    original_wrap = gthread.sock.ssl_wrap_socket

    def ssl_wrap_socket(raw: socket.socket, cfg: Any) -> Any:
        raw.settimeout(header_timeout())  # the SSL socket inherits it: do_handshake() gets one deadline
        return original_wrap(raw, cfg)

    def init(self: Any) -> None:
        if self.initialized or not self.cfg.is_ssl:
            return original_init(self)
        try:
            original_init(self)
        except TimeoutError:
            log.debug("closing %s: no TLS handshake within %.3g s", self.client, header_timeout())
            raise StopIteration() from None  # gthread's handle(): close quietly
        self.sock.settimeout(None)  # blocking again, as handle() expects

    def chunk(self: Any, size_hint: int | None = None) -> bytes:
        deadline = getattr(self, "head_deadline", None)
        if deadline is not None:
            sock = self.sock
            if type(sock) is socket.socket:  # plain TCP: take what has come without arming a timeout
                try:  # (a keep-alive request is read once the poller saw it arrive: it is there)
                    return sock.recv(self.mxchunk, socket.MSG_DONTWAIT)  # type: ignore[no-any-return]
                except BlockingIOError:
                    pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HeadTimeout()
            sock.settimeout(remaining)
            self.head_timeout_set = True
        return original_chunk(self, size_hint)

    def parser_next(self: Any) -> Any:
        unreader = self.unreader
        if not isinstance(unreader, gunreader.SocketUnreader):
            return original_next(self)
        sock = unreader.sock
        prior = sock.gettimeout()
        unreader.head_deadline = time.monotonic() + header_timeout()
        try:
            return original_next(self)
        except (HeadTimeout, TimeoutError):
            if prior is not None:
                raise  # a timeout someone else set: not ours to explain
            log.debug("closing a connection: no complete request head within %.3g s", header_timeout())
            raise StopIteration() from None
        finally:
            unreader.head_deadline = None
            if unreader.head_timeout_set:  # (settimeout is a system call: only when chunk() changed it)
                unreader.head_timeout_set = False
                try:
                    sock.settimeout(prior)
                except OSError:
                    pass

    # 3. A framing error while draining an unread body ends the connection, without a second answer.
    original_keepalive_after = worker_cls._keepalive_after

    def keepalive_after(self: Any, conn: Any, keepalive: Any) -> bool:
        try:
            return bool(original_keepalive_after(self, conn, keepalive))
        except Exception as exc:  # whatever it was, the answer already went out
            self.log.info("closing the connection of %s: its unread request body is malformed (%s)",
                          conn.client, exc)
            return False

    patched = [(worker_cls, "run", run), (worker_cls, "murder_pending", murder_pending),
               (worker_cls, "_keepalive_after", keepalive_after), (conn_cls, "close", close),
               (conn_cls, "init", init), (gthread.sock, "ssl_wrap_socket", ssl_wrap_socket),
               (gunreader.SocketUnreader, "chunk", chunk), (gunreader.SocketUnreader, "head_deadline", None),
               (gunreader.SocketUnreader, "head_timeout_set", False),
               (gparser.Parser, "__next__", parser_next), (gparser.Parser, "next", parser_next)]
    _state["originals"] = [(owner, name, owner.__dict__.get(name, _ABSENT)) for owner, name, _ in patched]
    for owner, name, value in patched:
        setattr(owner, name, value)
    _state["installed"] = True
    return True


_ABSENT = object()


def uninstall() -> None:
    """gunicorn's own worker, connection and parser again (``LLM_EDGE_PATCHES=false``)."""
    if not _state["installed"]:
        return
    for owner, name, original in _state.pop("originals"):
        if original is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
    _state["installed"] = False

"""Pooled HTTP to providers, and the one boundary where urllib3 errors become ours.

One ``UpstreamHTTP`` per worker process (built after fork): a urllib3
``PoolManager`` whose pools keep at least as many keep-alive connections as
the worker has threads, so no socket is thrown away under load. urllib3's read
timeout is per socket read, so the total deadline is enforced here, between
reads, and every read is given at most the time that is left. Streams have
two more limits: the first body byte must come within
``STREAM_FIRST_BYTE_TIMEOUT`` of sending the request (headers included, so a
provider cannot spend it twice), and then no gap between chunks may exceed
``STREAM_IDLE_TIMEOUT``. Each error says which limit ran out, and is made with
its ``FailureKind`` (``app.errors.classify`` reads it).

A request whose client hangs up is cut from another thread through its
``UpstreamAbort``: the pools record in it the connection an attempt is using,
from before its request is sent until the connection goes back to the pool.
"""

from __future__ import annotations

import functools
import http.client
import socket
import threading
import time
from collections.abc import Iterator, Mapping

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import parse_url

from app.errors import (
    BAD_RESPONSE,
    CONNECT_FAILURE,
    DEADLINE,
    RESET,
    TIMEOUT,
    GatewayError,
    UpstreamError,
    UpstreamTimeout,
)
from app.patches import urllib3 as urllib3_patches
from app.resilience.disconnects import ClientGone

READ_SIZE = 64 * 1024

# Upstream URLs are a few per provider; past this many remembered, the memory starts again.
MAX_REMEMBERED_URLS = 256

# Which limit a timed-out read was under, for the error message.
READ_LIMIT = "UPSTREAM_READ_TIMEOUT"
FIRST_BYTE_LIMIT = "STREAM_FIRST_BYTE_TIMEOUT"
IDLE_LIMIT = "STREAM_IDLE_TIMEOUT"
DEADLINE_LIMIT = "REQUEST_TIMEOUT"
_TIMED_OUT = {
    READ_LIMIT: "timed out while answering",
    FIRST_BYTE_LIMIT: "did not start its stream in time",
    IDLE_LIMIT: "went silent mid-stream",
    DEADLINE_LIMIT: "did not answer within the request deadline",
}


class UpstreamAbort:
    """One request's way to cut its upstream call from another thread (the disconnect watcher's).

    ``abort()`` marks the request ``gone`` and shuts down the socket of the connection its attempt
    is using, whether the provider has answered its headers yet or not: the thread blocked
    connecting, sending, waiting for the headers or reading the body gets an error at once, which
    the pipeline reads as the client gone (``gone``), never as the provider's failure. No attempt
    starts after it. ``finish()`` (the pipeline, as it hands its outcome back) ends its reach: a
    stream's connection is then the stream's to abort.

    The connection is known through the pools (``_AbortablePool``): recorded as ``_make_request``
    takes it, forgotten as it goes back to the pool (``_put_conn``), so an abort never reaches a
    connection another request has since taken. The lock makes the abort and the forgetting exclusive.
    """

    __slots__ = ("_conn", "_lock", "gone")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self.gone = False

    def abort(self) -> None:
        with self._lock:
            self.gone = True
            if self._conn is not None:
                _shut(self._conn)

    def finish(self) -> bool:
        """No connection is cut from now on; whether the request was aborted before."""
        with self._lock:
            self._conn = None
            return self.gone

    def _attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self.gone:
                raise ClientGone()
            self._conn = conn
        conn.upstream_abort = self  # type: ignore[attr-defined]

    def _detach(self, conn: HTTPConnection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.upstream_abort = None  # type: ignore[attr-defined]

    def _connected(self, conn: HTTPConnection) -> None:
        """An abort that came while ``conn`` had no socket yet cuts it now."""
        with self._lock:
            if self.gone and self._conn is conn:
                _shut(conn)


def _shut(conn: HTTPConnection) -> None:
    """Both directions of ``conn``'s TCP socket: reads return end-of-file, writes fail, the provider gets a FIN."""
    sock = conn.sock
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket under TLS too, its SSL state untouched
        except OSError:
            pass  # closed already


class _AbortableConnection:
    """Mixin for the pools' connections: an abort that came during ``connect()`` applies once it is done."""

    upstream_abort: UpstreamAbort | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.upstream_abort is not None:
            self.upstream_abort._connected(self)  # type: ignore[arg-type]


class _AbortablePool:
    """Mixin for the pools: ``urlopen(..., abort=UpstreamAbort)`` records the connection it uses in it.

    urllib3's ``urlopen`` passes keywords it does not know on to ``_make_request`` with the
    connection it took (urllib3 2.x); every connection comes back through ``_put_conn``.
    """

    wraps: type[HTTPConnectionPool]

    def _make_request(self, conn: HTTPConnection, method: str, url: str, *args: object,
                      abort: UpstreamAbort | None = None, **kw: object) -> urllib3.BaseHTTPResponse:
        if abort is not None:
            abort._attach(conn)
        return super()._make_request(conn, method, url, *args, **kw)  # type: ignore[misc, no-any-return]

    def _put_conn(self, conn: HTTPConnection | None) -> None:
        if conn is not None and conn.upstream_abort is not None:  # type: ignore[attr-defined]
            conn.upstream_abort._detach(conn)  # type: ignore[attr-defined]
        super()._put_conn(conn)  # type: ignore[misc]


@functools.cache
def abortable(base: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """``base`` (urllib3's pool class, or the one-write patch's) with the abort hooks, and its connections too."""
    conn_cls = type(f"Abortable{base.ConnectionCls.__name__}", (_AbortableConnection, base.ConnectionCls), {})
    return type(f"Abortable{base.__name__}", (_AbortablePool, base), {"ConnectionCls": conn_cls, "wraps": base})


class UpstreamHTTP:
    def __init__(self, *, connect_timeout: float, pool_maxsize: int) -> None:
        self.connect_timeout = connect_timeout
        self.pool = urllib3_patches.prepare_pool(
            urllib3.PoolManager(num_pools=32, maxsize=pool_maxsize, block=False, retries=False))
        # Whatever prepare_pool chose (patches on or off), with the abort hooks over it.
        self.pool.pool_classes_by_scheme = {scheme: abortable(cls)
                                            for scheme, cls in self.pool.pool_classes_by_scheme.items()}
        self._targets: dict[str, tuple[HTTPConnectionPool, str]] = {}

    def target(self, url: str) -> tuple[HTTPConnectionPool, str]:
        """The manager's connection pool for ``url``'s origin, and the request target, remembered per URL.

        Why: ``PoolManager.urlopen`` parses the URL and looks its pool up on every call, 4.6% of a cache
        miss's instructions (callgrind); the URLs are a handful per provider. A closed pool
        is looked up again; one the manager dropped (more origins than ``num_pools``) still works.
        """
        found = self._targets.get(url)
        if found is None or found[0].pool is None:
            parts = parse_url(url)
            found = (self.pool.connection_from_host(parts.host, port=parts.port, scheme=parts.scheme),
                     parts.request_uri)
            if len(self._targets) >= MAX_REMEMBERED_URLS:
                self._targets.clear()
            self._targets[url] = found
        return found

    def post(self, provider: str, url: str, headers: Mapping[str, str], body: bytes | None, *,
             read_timeout: float, deadline: float, limit: str = READ_LIMIT,
             abort: UpstreamAbort | None = None, method: str = "POST") -> urllib3.BaseHTTPResponse:
        """Send the request and return once the response headers are in (body unread).

        ``limit`` names the setting behind ``read_timeout``, for the message if it runs out;
        ``abort`` gets the connection used, until it goes back to the pool; ``method``: another verb
        (a relayed ``GET``/``DELETE`` of a stored response).
        """
        remaining = _remaining(provider, deadline)
        if remaining <= read_timeout:
            read_timeout, limit = remaining, DEADLINE_LIMIT
        timeout = urllib3.Timeout(connect=min(self.connect_timeout, remaining), read=read_timeout)
        try:
            pool, request_target = self.target(url)
            # What PoolManager.urlopen would do for this pool, redirects off: the same request.
            return pool.urlopen(method, request_target, body=body, headers=dict(headers), timeout=timeout,
                                preload_content=False, retries=False, redirect=False, assert_same_host=False,
                                abort=abort)
        except BaseException as exc:
            raise _translate(provider, exc, limit) from exc

    def read_all(self, provider: str, resp: urllib3.BaseHTTPResponse, *, read_timeout: float,
                 deadline: float, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body, each read bounded by what is left of the deadline."""
        parts: list[bytes] = []
        size = 0
        which = READ_LIMIT
        try:
            while True:
                wait, which = _bounded(provider, read_timeout, READ_LIMIT, deadline)
                _set_read_timeout(resp, wait)
                chunk = resp.read1(READ_SIZE)
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise UpstreamError(f"Provider {provider} answered a body over {limit} bytes",
                                        failure=BAD_RESPONSE)
        except GatewayError:
            resp.close()
            raise
        except BaseException as exc:
            resp.close()
            raise _translate(provider, exc, which) from exc
        finally:
            resp.release_conn()
        return b"".join(parts)

    def iter_body(self, provider: str, resp: urllib3.BaseHTTPResponse, *, first_byte_by: float,
                  idle_timeout: float, deadline: float) -> Iterator[bytes]:
        """Body chunks as they arrive: the first by ``first_byte_by``, then at most ``idle_timeout`` apart.

        Closing the generator early (client gone, error) closes the socket so the
        provider stops generating; a fully read body returns its connection to the pool.
        """
        finished = False
        first = True
        read = urllib3_patches.stream_reader(resp)
        set_wait = urllib3_patches.kernel_receive_timeout(resp) or functools.partial(_set_read_timeout, resp)
        monotonic = time.monotonic
        timeout_set = None
        try:
            while True:
                if first:
                    wait, which = first_byte_by - time.monotonic(), FIRST_BYTE_LIMIT
                    if wait <= 0:
                        raise _timed_out(provider, FIRST_BYTE_LIMIT)
                    wait, which = _bounded(provider, wait, which, deadline)
                else:  # _bounded, written out: this runs once per read of every stream
                    left = deadline - monotonic()
                    if idle_timeout < left:
                        wait, which = idle_timeout, IDLE_LIMIT
                    elif left > 0:
                        wait, which = left, DEADLINE_LIMIT
                    else:
                        raise _timed_out(provider, DEADLINE_LIMIT)
                if wait != timeout_set:  # between events of a stream far from its deadline: unchanged
                    set_wait(wait)
                    timeout_set = wait
                try:
                    chunk = read(READ_SIZE)
                except BaseException as exc:
                    raise _translate(provider, exc, which) from exc
                if not chunk:
                    finished = True
                    return
                first = False
                yield chunk
        finally:
            if not finished:
                resp.close()
            resp.release_conn()


def _remaining(provider: str, deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(provider, DEADLINE_LIMIT)
    return left


def _bounded(provider: str, wait: float, limit: str, deadline: float) -> tuple[float, str]:
    """``wait``, or what is left of the deadline when that is shorter, and the limit that binds."""
    left = _remaining(provider, deadline)
    return (wait, limit) if wait < left else (left, DEADLINE_LIMIT)


def _timed_out(provider: str, limit: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Provider {provider} {_TIMED_OUT[limit]} ({limit})",
                           failure=DEADLINE if limit == DEADLINE_LIMIT else TIMEOUT)


def _set_read_timeout(resp: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Change the socket timeout of a response being read (urllib3 fixes it per request)."""
    sock = urllib3_patches.response_socket(resp)
    if sock is not None:
        sock.settimeout(seconds)


def _translate(provider: str, exc: BaseException, limit: str = READ_LIMIT) -> BaseException:
    """urllib3 / socket errors as gateway errors, made with their ``FailureKind``; anything else unchanged."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, NewConnectionError):  # first: urllib3 makes it a ConnectTimeoutError subclass
        return UpstreamError(f"Could not connect to provider {provider}", failure=CONNECT_FAILURE)
    if isinstance(exc, ConnectTimeoutError):
        return UpstreamTimeout(f"Connecting to provider {provider} timed out (UPSTREAM_CONNECT_TIMEOUT)",
                               failure=CONNECT_FAILURE)
    if isinstance(exc, (ReadTimeoutError, socket.timeout, TimeoutError)):
        return _timed_out(provider, limit)
    if isinstance(exc, SSLError):
        return UpstreamError(f"TLS handshake with provider {provider} failed", failure=CONNECT_FAILURE)
    if isinstance(exc, (ProtocolError, HTTPError, OSError, http.client.HTTPException)):
        return UpstreamError(f"The connection to provider {provider} failed mid-answer", failure=RESET)
    return exc

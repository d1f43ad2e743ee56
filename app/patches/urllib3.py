"""urllib3, patched per pool: upstream connections that send a request's head and body in one write.

What it changes: ``prepare_pool(pool)`` (the one per-pool step of
``app.patches``) gives a ``PoolManager`` the connection pool classes below
(``pool_classes_by_scheme``), whose connections hold http.client's header
block back in ``send`` and let it leave together with the body. Only the
pools given to ``prepare_pool`` change (the gateway's upstream pool and the
benchmark's passthrough floor); other PoolManagers in the process keep
urllib3's own classes.

Why: urllib3 hands http.client the header block and then the body, and each
goes out with its own ``sendall``: two system calls (each with CPython's poll
before it, since the socket has a timeout) and two TCP segments for one small
JSON request, which the provider's server then reads twice. The head is held
back only when the body is one ``bytes`` object (every request the gateway
sends). Any other body (none, a file, an iterable, chunked) is sent exactly
as urllib3 sends it.

Measured gain (when it was made): "Each upstream request sent
in one write with its body: urllib3 alone 137-142 → 126-135 µs of CPU per
request" (loopback against nginx, one thread, 20,000 requests per run, four
alternating runs).

Relies on urllib3's ``HTTPConnection.request`` sending the head through ``send``
(http.client's ``endheaders``) and then the body: tests/integration/test_one_write.py
records the writes.

Below that, the readers of a streamed body (``stream_reader``, ``ChunkedReader``) and
the kernel's receive timeout for them (``kernel_receive_timeout``): each says what
and why where it is defined.
"""

from __future__ import annotations

import http.client
import socket
import struct
from collections.abc import Callable
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from app.patches import http_client

WRITTEN_FOR = ("urllib3", "2.8.0")

_state = {"enabled": True}  # set by install() / uninstall(): whether prepare_pool changes a pool


class OneWrite:
    """Mixin for urllib3's connections: the head waits in ``send`` for the body that follows it."""

    _joining = False  # a single bytes body follows the head of the request being sent
    _head: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any) -> None:
        self._joining = isinstance(body, bytes) and bool(body) and not options.get("chunked", False)
        try:
            super().request(method, url, body, headers, **options)  # type: ignore[misc]
        except BaseException:
            self._head = None  # the request failed; the connection is discarded, nothing more to send
            raise
        finally:
            self._joining = False
        if self._head is not None:  # urllib3 sent no body after all: the head alone, as it would have
            head, self._head = self._head, None
            super().send(head)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self._joining:
            if self._head is None:
                self._head = data  # http.client's header block, from endheaders()
                return
            data, self._head, self._joining = self._head + data, None, False
        super().send(data)  # type: ignore[misc]


class OneWriteHTTPConnection(OneWrite, HTTPConnection):
    pass


class OneWriteHTTPSConnection(OneWrite, HTTPSConnection):
    pass


class OneWriteHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = OneWriteHTTPConnection


class OneWriteHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = OneWriteHTTPSConnection


POOL_CLASSES = {"http": OneWriteHTTPConnectionPool, "https": OneWriteHTTPSConnectionPool}


def prepare_pool(pool: urllib3.PoolManager) -> urllib3.PoolManager:
    """``pool`` with the one-write connection pools, and its responses' headers read by the lean parser
    (``http_client``, process-wide, as ``install`` does it); nothing changes when patches are off.
    Returns ``pool``."""
    if _state["enabled"]:
        pool.pool_classes_by_scheme = POOL_CLASSES
        http_client.install()
    return pool


_MAX_CHUNK_LINE = 65536  # http.client's _MAXLINE: a chunk-size or trailer line longer than this is refused


class ChunkedReader:
    """A chunked body read straight from the connection's buffered socket: each ``read`` gives the data of
    every chunk one receive brought, joined (``read1`` semantics: blocks only when nothing is buffered).

    Why: a provider sends one event per chunk, and http.client's ``read1`` returns at most one chunk, in
    about eight Python calls. Events that arrive together (a gateway behind its streams, a provider that
    sends a burst) then cost one pass through the relay and one write each; here they cost one for all.
    Decodes as http.client does (chunk extensions ignored, the two bytes after a chunk's data skipped,
    trailers read and discarded), and at the last chunk closes the response's file as http.client does,
    so the connection goes back to its pool. A malformed or cut body raises ``http.client``'s errors.
    """

    __slots__ = ("_buf", "_done", "_fp", "_left", "_raw", "_skip", "_sock")

    def __init__(self, raw: http.client.HTTPResponse, sock: socket.socket | None = None) -> None:
        self._raw = raw
        self._sock = sock  # to tell the kernel's receive timeout from the end of the body (receive_timed_out)
        self._fp = raw.fp
        self._buf = b""
        self._left = 0  # data bytes still to come in the current chunk
        self._skip = 0  # bytes to skip after a chunk's data (its CRLF)
        self._done = False

    def read(self, n: int = 65536) -> bytes:
        out: list[bytes] = []
        while not self._done:
            if self._buf:
                self._decode(out)
                if out:
                    return out[0] if len(out) == 1 else b"".join(out)
                if self._done:
                    break
            data = self._fp.read1(n)  # what is buffered, else one receive
            if not data:
                if receive_timed_out(self._sock):
                    raise TimeoutError("timed out")
                self._raw._close_conn()
                raise http.client.IncompleteRead(b"".join(out))
            if self._buf:
                self._buf += data
                continue
            if not self._left and not self._skip:  # between chunks: the usual receive is one whole chunk
                eol = data.find(b"\r\n")
                if 0 < eol < 9 and data.endswith(b"\r\n"):
                    try:
                        size = int(data[:eol], 16)
                    except ValueError:
                        size = -1
                    if size > 0 and len(data) == eol + size + 4:
                        return data[eol + 2:-2]
            self._buf = data
        return b""

    def _decode(self, out: list[bytes]) -> None:
        """Move the data of the whole and partial chunks in ``_buf`` to ``out``; keep an unfinished line."""
        buf, pos, end = self._buf, 0, len(self._buf)
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                out.append(buf if take == end and not pos else buf[pos:pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._skip = 2
            if self._skip:
                skipped = min(self._skip, end - pos)
                pos += skipped
                self._skip -= skipped
                if self._skip:
                    break
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if end - pos > _MAX_CHUNK_LINE:
                    raise http.client.LineTooLong("chunk size")
                break
            line = buf[pos:eol]
            pos = eol + 1
            semi = line.find(b";")
            try:
                size = int(line if semi < 0 else line[:semi], 16)
            except ValueError:
                self._raw._close_conn()
                raise http.client.IncompleteRead(b"") from None
            if size < 0:
                self._raw._close_conn()
                raise http.client.IncompleteRead(b"")
            if size == 0:
                if not self._trailer_read(buf, pos):
                    pos = eol - len(line)  # the whole last chunk again, once its trailer is in
                    break
                self._done = True
                self._raw._close_conn()  # as http.client does at the last chunk: the connection may be reused
                pos = end
                break
            self._left = size
        self._buf = buf[pos:] if pos < end else b""

    @staticmethod
    def _trailer_read(buf: bytes, pos: int) -> bool:
        """The trailer section after the last chunk (lines, then an empty line) is all in ``buf``."""
        while True:
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if len(buf) - pos > _MAX_CHUNK_LINE:
                    raise http.client.LineTooLong("trailer line")
                return False
            if buf[pos:eol] in (b"", b"\r"):
                return True
            pos = eol + 1


def stream_reader(resp: urllib3.BaseHTTPResponse) -> Callable[[int], bytes]:
    """A streamed body's ``read1``: a ``ChunkedReader``'s ``read`` (or our own ``read1``, closing a sized body at
    its end, for a body that is not chunked), under urllib3's response, when the body needs no decoding
    (no ``content-encoding``); else urllib3's (also when patches are off).

    Why: a provider's stream arrives one event per read, and urllib3's ``read1`` wraps each read in its
    error catcher (a context manager), its decoder checks and its decoded-bytes buffer: about a third of
    what a relayed event cost (``benchkit.event_instructions``). Without them a failed read raises
    http.client's and the socket's own errors (``HTTPException``, ``OSError``, ``TimeoutError``), which
    the caller must translate as it does urllib3's. Relies on ``HTTPResponse._fp`` being the
    ``http.client.HTTPResponse`` (urllib3 2.x); anything else falls back to urllib3's ``read1``.
    """
    raw = getattr(resp, "_fp", None)
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if not _state["enabled"] or encoding != "identity" or not isinstance(raw, http.client.HTTPResponse):
        return resp.read1
    sock = _plain_socket(resp)
    if raw.chunked and raw.chunk_left is None and raw.fp is not None:  # nothing of the body read yet
        return ChunkedReader(raw, sock).read  # a bound method: cheaper to call than an instance's __call__
    return _unchunked_reader(raw, sock)


def _unchunked_reader(raw: http.client.HTTPResponse, sock: socket.socket | None) -> Callable[[int], bytes]:
    """http.client's ``read1`` over a body that is not chunked: sized (``content-length``) or read until the
    provider closes.

    A sized body is closed once all of it is read, as http.client's ``read`` does (CPython 3.11's ``read1``
    does not). Why: back in its pool with that response open, the connection answers its next request
    ``ResponseNotReady('Request-sent')``, a failed attempt (502s under load when every attempt of a
    request drew such a connection). A body the provider ends short of its length raises
    ``IncompleteRead`` (http.client returns ``b""``, which would pass a cut answer on as a whole one),
    as a cut chunked body does. An empty read that is the kernel's receive timeout raises
    ``TimeoutError`` (``receive_timed_out``), not the end of the body.
    """
    def read(n: int = 65536) -> bytes:  # http.client's read1, with the three differences above
        fp = raw.fp
        if fp is None:
            return b""
        length = raw.length
        if length is not None and n > length:
            n = length
            if not n:  # an empty body
                raw._close_conn()  # type: ignore[attr-defined]
                return b""
        data = fp.read1(n)
        if data:
            if length is not None:
                raw.length = length = length - len(data)
                if not length:
                    raw._close_conn()  # type: ignore[attr-defined]
            return data
        if receive_timed_out(sock):  # asked before the file is closed: closing it may close the socket
            raise TimeoutError("timed out")
        raw._close_conn()  # type: ignore[attr-defined]
        if length:  # the provider closed before the length it announced: a cut answer
            raise http.client.IncompleteRead(b"", length)
        return data
    return read


def response_socket(resp: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The socket a response's body is read from: its connection's, or (a response that closes its
    connection at the end, which http.client detaches from it at once) the one under its file."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is None:
        raw = getattr(resp, "_fp", None)
        sock = getattr(getattr(getattr(raw, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _plain_socket(resp: urllib3.BaseHTTPResponse) -> socket.socket | None:
    """The response's socket when it is a plain TCP one (not TLS), else None."""
    sock = response_socket(resp)
    return sock if type(sock) is socket.socket else None


def kernel_receive_timeout(resp: urllib3.BaseHTTPResponse) -> Callable[[float], None] | None:
    """For a streamed body on a plain socket (patches on): a function setting the wait for its next receive
    in the kernel (``SO_RCVTIMEO``, the socket made blocking); None otherwise (TLS, patches off: the
    caller sets Python's socket timeout).

    Why: Python polls before every receive on a socket with a timeout, and each of those system calls
    lets go of the GIL and must take it back; under thousands of threads taking it back is a wait. A
    stream's event then costs a receive and a send instead of a poll, a receive and a send. A timed-out
    receive reads as empty, which the readers above tell from the body's end with ``receive_timed_out``.
    The connection goes back to its pool blocking, with the option set: urllib3 sets Python's timeout
    again before its next request, and a non-blocking socket ignores ``SO_RCVTIMEO``.
    """
    sock = _plain_socket(resp) if _state["enabled"] else None
    if sock is None:
        return None
    sock.settimeout(None)

    def wait(seconds: float) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))
    return wait


def timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO``, at least a microsecond: zero means no timeout."""
    return struct.pack("ll", *divmod(max(1, round(seconds * 1_000_000)), 1_000_000))


def receive_timed_out(sock: socket.socket | None) -> bool:
    """After a receive that gave nothing: whether ``sock`` is open with nothing to read (the kernel's receive
    timeout ran out) rather than at its end. One system call, only when a read came back empty."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""  # bytes now: the wait ran out first
    except BlockingIOError:
        return True
    except OSError:
        return False


def install() -> bool:
    """``prepare_pool`` changes the pools it is given (nothing of urllib3 itself changes)."""
    _state["enabled"] = True
    return True


def uninstall() -> None:
    """``prepare_pool`` leaves pools as urllib3 makes them."""
    _state["enabled"] = False

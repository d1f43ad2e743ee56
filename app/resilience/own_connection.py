"""A Redis connection the guard speaks to itself: commands packed by hiredis, replies read by its Reader.

redis-py's ``Connection`` makes and ends the connection (address, Sentinel's
primary, TLS, AUTH, SELECT); once connected, commands go out on its socket
and replies come back through a ``hiredis.Reader`` of our own. redis-py's
send and read wrap the same two C calls in layers our commands never need: a
health check before each command, its host error text, push-notification and
decoding switches (``send_packed_command`` and ``read_response`` with the
parser's ``read_from_socket``: ~11,000 instructions a command). The health
check's PING found a dead connection as a command now does: one failed call,
counted by the guard, and a new connection for the next.

The socket's timeout (``REDIS_SOCKET_TIMEOUT``) is kept by the kernel
(``SO_RCVTIMEO``, ``SO_SNDTIMEO`` on a blocking socket) rather than by Python,
which polls before every send and receive on a socket with a timeout: each of
those system calls lets go of the GIL and must take it back, and under
thousands of threads taking it back is a wait. A command is then one send and
one receive. TLS sockets keep Python's timeout (an SSL read interrupted by the
kernel's timeout is not a plain timeout).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis
from redis._parsers import BaseParser

from app.patches.urllib3 import timeval

__all__ = ["OwnConnection", "packed"]

READ_SIZE = 65536  # bytes per receive, as redis-py's parser reads
_NOT_ENOUGH_DATA = object()  # what the Reader answers while a reply is incomplete (a RESP3 reply can be False)


def packed(args: Sequence[Any]) -> bytes:
    """One command in Redis's wire format.

    hiredis directly: redis-py's packer wraps the same call in argument rewriting that our commands
    never need (command names with spaces, bytearrays); the wrapper was 1.3% of a worker's samples on
    a cache miss at c=1 (py-spy).
    """
    try:
        return hiredis.pack_command(tuple(args))
    except TypeError as exc:  # what redis-py raises for an argument it cannot send
        raise redis.DataError(str(exc)) from None


class OwnConnection:
    """A Redis connection used by one call at a time; replies of commands sent without waiting are read
    before its next command."""

    __slots__ = ("buffer", "conn", "late_error", "reader", "sock", "unread")

    def __init__(self, conn: redis.Connection, late_error: Callable[[str, Exception], None]) -> None:
        self.conn = conn
        self.late_error = late_error
        self.unread: list[str] = []  # operations whose replies are still on the socket, oldest first
        self.sock: socket.socket | None = None  # the connected socket; None until connected and once lost
        self.reader: Any = None  # this socket's hiredis.Reader
        self.buffer: bytearray | None = None  # what replies are received into

    def execute(self, args: Sequence[Any]) -> Any:
        self._catch_up()
        try:
            self._send(packed(args))
            return self._reply()
        except redis.ResponseError:
            raise  # an error reply: the connection is still in step
        except BaseException:
            self._lost()
            raise

    def send(self, operation: str, args: Sequence[Any]) -> None:
        self._catch_up()
        try:
            self._send(packed(args))
        except BaseException:
            self._lost()
            raise
        self.unread.append(operation)

    def _send(self, command: bytes) -> None:
        """Connect through the connection's own ``connect`` when not connected (a Sentinel-managed one asks
        the Sentinels for the primary's address there), then write the command."""
        sock = self.sock
        if sock is None:
            sock = self._connect()
        try:
            sock.sendall(command)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: the kernel's SO_SNDTIMEO ran out
            raise redis.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            raise redis.ConnectionError(f"Error while writing to socket: {exc.args}") from None

    def _connect(self) -> socket.socket:
        conn = self.conn
        conn.connect()
        encoder = conn.encoder  # the client's reply decoding (the gateway's clients keep bytes)
        options: dict[str, Any] = {"protocolError": redis.InvalidResponse, "replyError": BaseParser.parse_error,
                                   "errors": encoder.encoding_errors, "notEnoughData": _NOT_ENOUGH_DATA}
        if encoder.decode_responses:
            options["encoding"] = encoder.encoding
        self.reader = hiredis.Reader(**options)
        # redis-py's parser's buffer, which nothing else reads into now: a connection costs no more memory
        # than before (one of our own where a parser has none).
        if self.buffer is None:
            self.buffer = getattr(conn._parser, "_buffer", None) or bytearray(READ_SIZE)
        sock = conn._sock
        assert sock is not None
        kernel_timeouts(sock)
        self.sock = sock
        return sock

    def _reply(self) -> Any:
        """The next reply on the socket; an error reply (``ResponseError`` and its kin) is raised."""
        reader, sock, buffer = self.reader, self.sock, self.buffer
        if reader is None or sock is None or buffer is None:
            raise redis.ConnectionError("Not connected")
        reply = reader.gets()
        while reply is _NOT_ENOUGH_DATA:
            try:
                size = sock.recv_into(buffer)
            except (TimeoutError, BlockingIOError):  # BlockingIOError: the kernel's SO_RCVTIMEO ran out
                raise redis.TimeoutError("Timeout reading from socket") from None
            except OSError as exc:
                raise redis.ConnectionError(f"Error while reading from socket: {exc.args}") from None
            if not size:
                raise redis.ConnectionError("Connection closed by server.")
            reader.feed(buffer, 0, size)
            reply = reader.gets()
        if isinstance(reply, redis.RedisError):
            raise reply
        return reply

    def _catch_up(self) -> None:
        while self.unread:
            try:
                self._reply()
            except redis.ResponseError as exc:
                self.late_error(self.unread[0], exc)
            except BaseException:
                self._lost()
                raise
            del self.unread[0]

    def _lost(self) -> None:
        """Anything but an error reply may leave replies unread: start again on a new connection."""
        self.unread.clear()
        self.sock = self.reader = None
        self.conn.disconnect()


def kernel_timeouts(sock: socket.socket) -> None:
    """Move a plain socket's timeout from Python to the kernel: blocking, with ``SO_RCVTIMEO`` and
    ``SO_SNDTIMEO`` of the same length (a timed-out call then raises ``BlockingIOError``). A socket with
    no timeout, or a TLS one, stays as it is."""
    timeout = sock.gettimeout()
    if not timeout or type(sock) is not socket.socket:
        return
    value = timeval(timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)

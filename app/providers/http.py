"""Pooled HTTP to providers, and the one boundary where urllib3 errors become ours.

One ``UpstreamHTTP`` per worker process (built after fork): a urllib3
``PoolManager`` whose pools keep at least as many keep-alive connections as
the worker has threads, so no socket is thrown away under load. urllib3's read
timeout is per socket read, so the total deadline is enforced here, between
reads, and every read is given at most the time that is left.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from app.errors import UpstreamError, UpstreamTimeout

READ_SIZE = 64 * 1024


class UpstreamHTTP:
    def __init__(self, *, connect_timeout: float, pool_maxsize: int) -> None:
        self.connect_timeout = connect_timeout
        self.pool = urllib3.PoolManager(num_pools=32, maxsize=pool_maxsize, block=False, retries=False)

    def post(self, provider: str, url: str, headers: Mapping[str, str], body: bytes, *,
             read_timeout: float, deadline: float) -> urllib3.BaseHTTPResponse:
        """Send the request and return once the response headers are in (body unread)."""
        remaining = _remaining(provider, deadline)
        timeout = urllib3.Timeout(connect=min(self.connect_timeout, remaining), read=min(read_timeout, remaining))
        try:
            return self.pool.urlopen("POST", url, body=body, headers=dict(headers), timeout=timeout,
                                     preload_content=False, retries=False, redirect=False)
        except BaseException as exc:
            raise _translate(provider, exc) from exc

    def read_all(self, provider: str, resp: urllib3.BaseHTTPResponse, *, read_timeout: float,
                 deadline: float, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body, each read bounded by what is left of the deadline."""
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                _set_read_timeout(resp, min(read_timeout, _remaining(provider, deadline)))
                chunk = resp.read1(READ_SIZE)
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise UpstreamError(f"Provider {provider} answered a body over {limit} bytes")
        except (UpstreamError, UpstreamTimeout):
            resp.close()
            raise
        except BaseException as exc:
            resp.close()
            raise _translate(provider, exc) from exc
        finally:
            resp.release_conn()
        return b"".join(parts)

    def iter_body(self, provider: str, resp: urllib3.BaseHTTPResponse, *, first_timeout: float,
                  idle_timeout: float, deadline: float) -> Iterator[bytes]:
        """Body chunks as they arrive, with a first-byte limit, an idle limit and the deadline.

        Closing the generator early (client gone, error) closes the socket so the
        provider stops generating; a fully read body returns its connection to the pool.
        """
        limit = first_timeout
        finished = False
        try:
            while True:
                _set_read_timeout(resp, min(limit, _remaining(provider, deadline)))
                try:
                    chunk = resp.read1(READ_SIZE)
                except BaseException as exc:
                    raise _translate(provider, exc) from exc
                if not chunk:
                    finished = True
                    return
                limit = idle_timeout
                yield chunk
        finally:
            if not finished:
                resp.close()
            resp.release_conn()


def _remaining(provider: str, deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UpstreamTimeout(f"Provider {provider} did not answer within the request deadline")
    return left


def _set_read_timeout(resp: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Change the socket timeout of a response being read (urllib3 fixes it per request)."""
    conn = getattr(resp, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _translate(provider: str, exc: BaseException) -> BaseException:
    """urllib3 / socket errors as gateway errors; anything else unchanged."""
    if isinstance(exc, (UpstreamError, UpstreamTimeout)):
        return exc
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, (ConnectTimeoutError,)):
        return UpstreamTimeout(f"Connecting to provider {provider} timed out")
    if isinstance(exc, (ReadTimeoutError, socket.timeout, TimeoutError)):
        return UpstreamTimeout(f"Provider {provider} timed out while answering")
    if isinstance(exc, NewConnectionError):
        return UpstreamError(f"Could not connect to provider {provider}")
    if isinstance(exc, SSLError):
        return UpstreamError(f"TLS handshake with provider {provider} failed")
    if isinstance(exc, (ProtocolError, HTTPError, OSError)):
        return UpstreamError(f"The connection to provider {provider} failed mid-answer")
    return exc

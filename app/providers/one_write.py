"""Upstream connections that send a request's head and body in one write.

urllib3 hands http.client the header block and then the body, and each goes
out with its own ``sendall``: two system calls (each with CPython's poll
before it, since the socket has a timeout) and two TCP segments for one small
JSON request, which the provider's server then reads twice. Here the header
block is held back and leaves together with the body, when the body is one
``bytes`` object (every request the gateway sends). Any other body (none, a
file, an iterable, chunked) is sent exactly as urllib3 sends it.

Measured on loopback against nginx (urllib3 alone, one thread, 20,000
requests per run, four alternating runs): 137-142 -> 126-135 us of CPU per
request.
"""

from __future__ import annotations

from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


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

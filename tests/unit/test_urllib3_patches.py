"""urllib3's patches, made by one per-pool step for the gateway's upstream pool and the passthrough floor."""

from __future__ import annotations

import gzip
import http.client
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from app.patches import http_client as headers
from app.patches import urllib3 as urllib3_patches
from app.patches.urllib3 import POOL_CLASSES
from app.providers.http import UpstreamHTTP
from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import floors


def trimmed(pool: urllib3.PoolManager) -> bool:
    return pool.pool_classes_by_scheme is POOL_CLASSES and http.client.parse_headers is headers.parse_headers


def test_install_gives_a_pool_both_trims(monkeypatch) -> None:
    monkeypatch.setattr(http.client, "parse_headers", headers.STDLIB_PARSE_HEADERS)
    pool = urllib3.PoolManager()
    assert urllib3_patches.prepare_pool(pool) is pool
    assert trimmed(pool)


def test_the_gateways_upstream_pool_is_trimmed(monkeypatch) -> None:
    """The one-write pools, under the gateway's own abort hooks (app/providers/http.py)."""
    monkeypatch.setattr(http.client, "parse_headers", headers.STDLIB_PARSE_HEADERS)
    pool = UpstreamHTTP(connect_timeout=1, pool_maxsize=4).pool
    assert {scheme: cls.wraps for scheme, cls in pool.pool_classes_by_scheme.items()} == POOL_CLASSES
    assert http.client.parse_headers is headers.parse_headers


def test_the_passthrough_floor_gets_the_same_trims(monkeypatch) -> None:
    """The floor's generated app, run as gunicorn would import it: its pool has what the gateway's has."""
    monkeypatch.setattr(http.client, "parse_headers", headers.STDLIB_PARSE_HEADERS)
    namespace: dict = {}
    exec(floors.PASSTHROUGH_APP.format(upstream="http://127.0.0.1:1", threads=4), namespace)
    assert trimmed(namespace["pool"])


class _Events(BaseHTTPRequestHandler):
    """Three SSE events, each its own HTTP chunk; gzip-encoded when the path says so; in one body with its
    ``content-length`` at ``/sized`` (as nginx's ``return`` sends it, or a server that buffers its stream)."""

    protocol_version = "HTTP/1.1"
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(3)]

    def do_GET(self) -> None:
        if self.path in ("/sized", "/cut", "/empty"):
            body = b"" if self.path == "/empty" else b"".join(self.events)
            length = len(body) + (100 if self.path == "/cut" else 0)  # /cut: the connection closes 100 short
            head = f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {length}\r\n\r\n"
            self.wfile.write(head.encode() + body)
            self.close_connection = self.path == "/cut"
            return
        gzipped = self.path == "/gzip"
        chunks = [gzip.compress(b"".join(self.events))] if gzipped else self.events
        head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
        out = (head + ("content-encoding: gzip\r\n" if gzipped else "") + "\r\n").encode()
        out += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        self.wfile.write(out)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _read_all(read) -> list[bytes]:  # type: ignore[no-untyped-def]
    out = []
    while chunk := read(65536):
        out.append(chunk)
    return out


def test_a_stream_is_read_one_event_per_read_below_urllib3_unless_it_must_be_decoded() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Events)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = urllib3.PoolManager(retries=False)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        plain = pool.request("GET", base + "/plain", preload_content=False)
        read = urllib3_patches.stream_reader(plain)
        assert isinstance(read.__self__, urllib3_patches.ChunkedReader)  # urllib3's per-read wrapping skipped
        assert b"".join(_read_all(read)) == b"".join(_Events.events)  # the chunks that came together, joined
        plain.release_conn()
        again = pool.request("GET", base + "/plain", preload_content=False)  # the connection, reused
        assert b"".join(_read_all(urllib3_patches.stream_reader(again))) == b"".join(_Events.events)
        again.release_conn()
        assert pool.connection_from_url(base).num_connections == 1
        zipped = pool.request("GET", base + "/gzip", preload_content=False)
        read = urllib3_patches.stream_reader(zipped)
        assert read == zipped.read1  # decoded by urllib3
        assert b"".join(_read_all(read)) == b"".join(_Events.events)
        urllib3_patches.uninstall()
        off = pool.request("GET", base + "/plain", preload_content=False)
        assert urllib3_patches.stream_reader(off) == off.read1
        off.drain_conn()
    finally:
        urllib3_patches.install()
        server.shutdown()
        server.server_close()


def test_a_sized_stream_read_to_its_end_leaves_the_connection_reusable_and_a_cut_one_raises() -> None:
    """http.client's ``read1`` leaves a body with ``content-length`` open when it has read all of it (its
    ``read`` closes it); a connection back in the pool with that response open answers the next request
    ``ResponseNotReady('Request-sent')`` (seen as 502s under load before the fix)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Events)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = urllib3.PoolManager(retries=False)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for _ in range(3):
            resp = pool.request("GET", base + "/sized", preload_content=False)
            read = urllib3_patches.stream_reader(resp)
            assert b"".join(_read_all(read)) == b"".join(_Events.events)
            assert read(65536) == b""  # past the end: still empty, no error
            resp.release_conn()
        empty = pool.request("GET", base + "/empty", preload_content=False)
        assert urllib3_patches.stream_reader(empty)(65536) == b""  # the end, not a wait for more
        empty.release_conn()
        assert pool.connection_from_url(base).num_connections == 1
        cut = pool.request("GET", base + "/cut", preload_content=False)
        read = urllib3_patches.stream_reader(cut)
        assert read(65536) == b"".join(_Events.events)
        with pytest.raises(http.client.IncompleteRead):
            read(65536)
    finally:
        server.shutdown()
        server.server_close()


# --- ChunkedReader: a chunked body however the receives cut it (RFC 9112, section 7.1) ------------------

@dataclass
class _Socket:
    """``read1`` as a buffered socket file gives it: the next receive."""

    receives: list[bytes]

    def read1(self, n: int) -> bytes:
        return self.receives.pop(0) if self.receives else b""


@dataclass
class _Raw:
    fp: _Socket
    closed: list[bool] = field(default_factory=list)

    def _close_conn(self) -> None:
        self.closed.append(True)


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True) if body[a:b]]


def _chunked(pieces: list[bytes], *, ext: bytes = b"", trailer: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    return (b"".join(b"%x%s%s%s\r\n" % (len(p), ext, eol, p) for p in pieces)
            + b"0" + ext + eol + trailer + eol)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.lists(st.integers(0, 10_000), max_size=12),
       st.sampled_from([b"", b";name=value"]), st.sampled_from([b"", b"expires: never\r\n"]),
       st.sampled_from([b"\r\n", b"\n"]))
def test_a_chunked_body_cut_anywhere_reads_whole_then_closes(pieces, cuts, ext, trailer, eol):
    raw = _Raw(_Socket(_cut(_chunked(pieces, ext=ext, trailer=trailer, eol=eol), cuts)))
    read = urllib3_patches.ChunkedReader(raw).read  # type: ignore[arg-type]
    got = []
    while data := read(65536):
        got.append(data)
    assert b"".join(got) == b"".join(pieces)
    assert raw.closed == [True]  # at the last chunk, as http.client: the connection may go back to its pool
    assert read(65536) == b""


def test_chunks_that_arrive_together_come_out_as_one_read():
    events = [b"data: %d\n\n" % i for i in range(3)]
    read = urllib3_patches.ChunkedReader(_Raw(_Socket([_chunked(events)[:-5], b"0\r\n\r\n"]))).read  # type: ignore
    assert read(65536) == b"".join(events)
    assert read(65536) == b""


@pytest.mark.parametrize("body", [
    b"5\r\nhel",  # cut inside a chunk
    b"zz\r\nhello\r\n0\r\n\r\n",  # not a size
    b"5\r\nhello\r\n",  # cut before the last chunk
])
def test_a_cut_or_malformed_body_is_http_clients_incomplete_read(body):
    raw = _Raw(_Socket([body]))
    read = urllib3_patches.ChunkedReader(raw).read  # type: ignore[arg-type]
    with pytest.raises(http.client.IncompleteRead):
        while read(65536):
            pass
    assert raw.closed == [True]


def test_an_endless_size_line_is_refused():
    read = urllib3_patches.ChunkedReader(_Raw(_Socket([b"1" * 70_000]))).read  # type: ignore[arg-type]
    with pytest.raises(http.client.LineTooLong):
        read(65536)

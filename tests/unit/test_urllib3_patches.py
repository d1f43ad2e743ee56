"""urllib3's patches, made by one per-pool step for the gateway's upstream pool and the passthrough floor."""

from __future__ import annotations

import gzip
import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import urllib3

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
    """Three SSE events, each its own HTTP chunk; gzip-encoded when the path says so."""

    protocol_version = "HTTP/1.1"
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(3)]

    def do_GET(self) -> None:
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
        assert read != plain.read1  # http.client's own: urllib3's per-read wrapping skipped
        assert _read_all(read) == _Events.events  # each chunk as it came, the stream's end seen
        plain.release_conn()
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

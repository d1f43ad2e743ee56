"""urllib3's patches, made by one per-pool step for the gateway's upstream pool and the passthrough floor."""

from __future__ import annotations

import http.client
import sys

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

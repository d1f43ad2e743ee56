"""A scrape that meets a worker creating its metric files still answers (app/patches/prometheus_client.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(30)

SCRIPT = """
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from prometheus_client import CollectorRegistry, multiprocess
from app.observability import metrics
from app.patches.prometheus_client import collector

metrics.CACHE_HITS.labels("l1").inc(3)
# A new worker between opening its file and sizing it: the file exists and is empty.
open(os.path.join(sys.argv[1], "counter_999999.db"), "wb").close()
try:
    multiprocess.MultiProcessCollector(CollectorRegistry()).collect()
    print("stock: ok")
except Exception as exc:
    print("stock:", type(exc).__name__)
registry = CollectorRegistry()
collector(registry)
print("ours:", registry.get_sample_value("llm_edge_cache_hits_total", {"tier": "l1"}))
"""


def test_an_empty_worker_file_is_skipped_where_the_stock_collector_fails(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["stock: error", "ours: 3.0"]

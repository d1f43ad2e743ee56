"""``app.patches.install``: idempotent when on; when off, every library object is the library's own.

In fresh interpreters: the patches change process-wide objects, and prometheus_client picks its value
class at import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, after_gunicorn_conf

pytestmark = pytest.mark.timeout(60)

# Each library object the patches may change is the library's own, and the per-use steps change nothing.
AS_SHIPPED = """
import http.client, logging, os, urllib3
import gunicorn.util
from gunicorn.http import parser, unreader, wsgi
from gunicorn.workers import gthread
from prometheus_client import CollectorRegistry, multiprocess, values
from app.observability import metrics  # as a worker imports it, after the master's install
from app.patches import prometheus_client as prometheus_patches, urllib3 as urllib3_patches
from app.providers.http import UpstreamHTTP

assert wsgi.Response.write.__module__ == "gunicorn.http.wsgi", wsgi.Response.write
assert gunicorn.util.http_date.__module__ == "gunicorn.util", gunicorn.util.http_date
for owner, name in ((gthread.ThreadWorker, "run"), (gthread.ThreadWorker, "murder_pending"),
                    (gthread.ThreadWorker, "_keepalive_after"), (gthread.TConn, "close"), (gthread.TConn, "init"),
                    (unreader.SocketUnreader, "chunk"), (parser.Parser, "__next__"), (parser.Parser, "next")):
    assert getattr(owner, name).__module__.startswith("gunicorn."), (owner, name)
assert gthread.sock.ssl_wrap_socket.__module__ == "gunicorn.sock"
assert "head_deadline" not in vars(unreader.SocketUnreader)
assert "head_timeout_set" not in vars(unreader.SocketUnreader)
assert http.client.parse_headers.__module__ == "http.client", http.client.parse_headers
assert logging._srcfile is not None and logging.logThreads and logging.logMultiprocessing
assert values.ValueClass.__module__ == "prometheus_client.values", values.ValueClass
assert type(metrics.REQUESTS.labels("e", "p", "m", "200")._value).__module__ == "prometheus_client.values"
assert type(prometheus_patches.collector(CollectorRegistry(), os.environ["PROMETHEUS_MULTIPROC_DIR"])) \\
    is multiprocess.MultiProcessCollector
default_pools = urllib3.PoolManager().pool_classes_by_scheme
pools = UpstreamHTTP(connect_timeout=1, pool_maxsize=2).pool.pool_classes_by_scheme  # the gateway's hooks over...
assert {scheme: cls.wraps for scheme, cls in pools.items()} == default_pools  # ... urllib3's own pools
assert urllib3_patches.prepare_pool(urllib3.PoolManager()).pool_classes_by_scheme is default_pools
"""

ON_THEN_OFF = """
import os, sys, tempfile
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from app import patches
from app.patches import gunicorn as gunicorn_patches
from gunicorn.http import wsgi
assert patches.install(True) == dict.fromkeys(patches.MODULES, True)
assert patches.install(True) == dict.fromkeys(patches.MODULES, True)  # again: the same, nothing stacked
assert wsgi.Response.write is gunicorn_patches.write
assert patches.install(False) == dict.fromkeys(patches.MODULES, False)
""" + AS_SHIPPED


def run(source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=50)


def test_install_twice_then_off_leaves_every_library_as_shipped() -> None:
    done = run(ON_THEN_OFF)
    assert done.returncode == 0, done.stderr[-2000:]


def test_gunicorn_conf_with_patches_off_changes_no_library(tmp_path: Path) -> None:
    """What the master hands its workers with LLM_EDGE_PATCHES=false: libraries as shipped."""
    done = after_gunicorn_conf(AS_SHIPPED, tmp_path, {"LLM_EDGE_PATCHES": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr


def test_gunicorn_conf_installs_every_patch(tmp_path: Path) -> None:
    done = after_gunicorn_conf("from app import patches\n"
                               "assert patches.install(True) == dict.fromkeys(patches.MODULES, True)\n"
                               "from prometheus_client import values\n"
                               "assert values.ValueClass.__module__ == 'app.patches.prometheus_client'", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr

"""Keep-alive connections pinned to each gunicorn worker, so a test can talk to every worker on purpose.

A gthread worker keeps a kept-alive connection for itself, so one connection
is one worker. Breakers and drain state are per worker; without pinning, a
test could never be sure it had reached both.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import urllib3

TIMEOUT = urllib3.Timeout(connect=2, read=10)


def worker_pid(conn: urllib3.HTTPConnectionPool) -> int:
    """The pid of the worker that serves ``conn`` (from /health)."""
    resp = conn.request("GET", "/health")
    return json.loads(resp.data)["checks"]["circuit_breakers"]["detail"]["worker_pid"]


def pinned_connections(port: int, workers: int = 2, within: float = 20.0) -> dict[int, urllib3.HTTPConnectionPool]:
    """One single-connection pool per worker pid.

    Connections are opened in concurrent bursts: one at a time, the same idle
    worker tends to win every accept. A worker still booting takes none, so
    bursts go on for a while.
    """
    found: dict[int, urllib3.HTTPConnectionPool] = {}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pools = [urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=True, retries=False, timeout=TIMEOUT)
                 for _ in range(8)]
        with ThreadPoolExecutor(len(pools)) as ex:
            pids = list(ex.map(worker_pid, pools))
        for pid, pool in zip(pids, pools, strict=True):
            if pid in found or len(found) == workers:
                pool.close()
            else:
                found[pid] = pool
        if len(found) == workers:
            return found
        time.sleep(0.1)
    raise AssertionError(f"reached only workers {sorted(found)} in {within:g} s of connection bursts")

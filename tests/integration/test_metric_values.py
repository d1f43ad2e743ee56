"""The lean multiprocess value writes what prometheus_client's own would: the master's scrape cannot tell them apart.

Each check runs a script in a fresh process (prometheus_client picks its value class at import) twice: once with
prometheus_client's ``MultiProcessValue``, once with ``app/patches/prometheus_client.py``, and compares what the
stock ``MultiProcessCollector`` reads from the files: counters, every gauge mode, histograms, enough label sets to
grow the files past their first size (values written after the file was remapped), and a fork whose child writes
its own file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(60)

SCRIPT = """
import json, os, sys, threading
kind, folder = sys.argv[1], sys.argv[2]
os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from app.patches.prometheus_client import lean_multiprocess_value

values.ValueClass = lean_multiprocess_value() if kind == "lean" else values.MultiProcessValue()
requests = Counter("t_requests", "r", ["route"], registry=None)
in_flight = Gauge("t_in_flight", "f", multiprocess_mode="livesum", registry=None)
spend = Gauge("t_spend", "s", ["model"], multiprocess_mode="sum", registry=None)
state = Gauge("t_state", "b", ["provider"], multiprocess_mode="livemax", registry=None)
latency = Histogram("t_latency", "l", ["route"], buckets=(0.001, 0.01, 0.1), registry=None)

first = requests.labels("first")
first.inc()
in_flight.inc(); in_flight.inc(); in_flight.dec()
spend.labels("m").inc(1.25)
state.labels("p").set(2)
for seconds in (0.0005, 0.005, 0.05, 0.5):
    latency.labels("a").observe(seconds)
if kind == "lean":  # a histogram's sum and bucket under one lock (metrics.observer): what observe writes
    b = latency.labels("b")
    b._sum.inc_with(0.05, b._buckets[2], 1.0)
else:
    latency.labels("b").observe(0.05)
if kind == "lean":  # a request's end under one lock (metrics.request_ended): count, duration, in-flight down
    c = latency.labels("c")
    type(first._value).inc_each(((requests.labels("c")._value, 1.0), (c._sum, 0.05), (c._buckets[2], 1.0),
                                 (in_flight._value, -1.0)))
else:
    requests.labels("c").inc()
    latency.labels("c").observe(0.05)
    in_flight.dec()
in_flight.inc()  # back to where it was
for i in range(1500):  # about 250 KB of keys: the 64 KiB file grows and is mapped again, twice
    requests.labels(f"route-{i}").inc(i)
first.inc(10)  # a value made before the growth, written after it

def hammer():
    for _ in range(5000):
        first.inc()
threads = [threading.Thread(target=hammer) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()

pid = os.fork()
if pid == 0:
    first.inc(100)
    in_flight.inc()
    state.labels("p").set(1)
    latency.labels("a").observe(0.002)
    os._exit(0)
os.waitpid(pid, 0)
first.inc(1000)  # the parent after the fork: still its own file
files = sorted(f.split("_")[-1] for f in os.listdir(folder))
assert set(files) == {f"{os.getpid()}.db", f"{pid}.db"}, files
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
samples = sorted([s.name, sorted(s.labels.items()), s.value] for m in registry.collect() for s in m.samples
                 if "pid" not in s.labels)
print(json.dumps({"samples": samples, "first": first._value.get()}))
"""


def _scrape(kind: str, folder) -> dict:  # type: ignore[no-untyped-def]
    folder.mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, kind, str(folder)], cwd=ROOT, capture_output=True,
                         text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_master_reads_the_same_samples_from_lean_values_as_from_prometheus_clients(tmp_path) -> None:
    stock = _scrape("stock", tmp_path / "stock")
    lean = _scrape("lean", tmp_path / "lean")
    assert lean["samples"] == stock["samples"]
    by_name = {(name, tuple(map(tuple, labels))): value for name, labels, value in lean["samples"]}
    # Spot checks that the comparison compares something: threads lost no update, both processes counted.
    assert by_name[("t_requests_total", (("route", "first"),))] == 1 + 10 + 4 * 5000 + 100 + 1000
    assert by_name[("t_requests_total", (("route", "route-1499"),))] == 1499
    assert by_name[("t_in_flight", ())] == 2
    assert by_name[("t_state", (("provider", "p"),))] == 2
    assert by_name[("t_latency_bucket", (("le", "0.01"), ("route", "a")))] == 3
    assert lean["first"] == 1 + 10 + 4 * 5000 + 1000  # the parent's own value, untouched by the child

"""benchkit.soak: a 12-second soak prints its rows and passes; the verdict fails on a failure or a restart."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from benchkit.procs import child_env
from benchkit.soak import COLUMNS, KINDS, Minute, summary


@pytest.mark.timeout(120)
def test_a_short_soak_prints_a_row_per_period_without_failures_or_restarts() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchkit.soak", "--minutes", "0.2", "--row-seconds", "5",
                           "--idle-seconds", "3"], cwd=ROOT / "scripts", env=child_env(), capture_output=True,
                          text=True, timeout=110)
    out = proc.stdout
    assert proc.returncode == 0, f"soak failed:\n{out}\n{proc.stderr[-3000:]}"
    header = next(line for line in out.splitlines() if line.startswith("| minute "))
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if re.match(r"\|\s+[\d.]+ \|", line)]
    assert [r[0] for r in rows] == ["0.08", "0.17", "0.2"], out  # at 5 s, 10 s, and the end at 12 s
    total = Counter()
    for row in rows:
        counts = dict(zip(KINDS, map(int, row[1:1 + len(KINDS)]), strict=True))
        total.update(counts)
        failures, p50, p99, rss_sum, rss_max, workers = row[1 + len(KINDS):]
        assert failures == "0", out
        assert 0 < float(p50) <= float(p99), out
        assert 0 < float(rss_max) <= float(rss_sum), out
        assert workers == "2", out
    assert all(total[kind] > 0 for kind in KINDS), total
    assert total["idle"] >= 16, total  # 8 idle connections, each asking at least twice
    assert "worker restarts: 0 " in out, out
    assert "upstream streams still open after the disconnects: 0" in out, out
    assert "error lines in the gateway's log: 0" in out, out
    assert re.search(r"^failures: 0$", out, re.M), out
    assert out.rstrip().endswith("soak passed"), out


def _minute(end: float, pids: tuple[int, ...], rss: float, **failures: int) -> Minute:
    return Minute(end, 2 * rss, rss, pids, Counter(failures))


def test_the_verdict_counts_failures_restarts_and_growth() -> None:
    fine = [_minute(1, (10, 11), 40.0), _minute(2, (10, 11), 41.5)]
    lines, ok = summary(fine, 0, [], "")
    assert ok, lines
    assert lines[0].startswith("RSS growth first -> last row: sum +3.0 MiB (80.0 -> 83.0), max +1.5 MiB")

    restarted = [_minute(1, (10, 11), 40.0), _minute(2, (10, 12), 40.0)]
    lines, ok = summary(restarted, 0, [], "")
    assert not ok and "worker restarts: 1 (first workers 10, 11; new: 12)" in lines

    failed = [_minute(1, (10, 11), 40.0, timeout=1), _minute(2, (10, 11), 40.0, **{"5xx": 2})]
    lines, ok = summary(failed, 0, ["hit: status 502, not 200"], "")
    assert not ok and "failures: 3, 5xx 2, timeout 1" in lines and "  e.g. hit: status 502, not 200" in lines

    assert not summary(fine, 1, [], "")[1]  # an upstream stream the gateway never closed
    log = '{"level":"info","msg":"request"}\n{"level":"error","msg":"Worker (pid:11) was sent SIGKILL!"}\n'
    lines, ok = summary(fine, 0, [], log)
    assert not ok and "error lines in the gateway's log: 1" in lines

"""System calls and context switches per request, counted by ``perf stat`` on a gateway's processes.

Why: under load the gateway's own Python work costs several times the CPU it
costs in one thread (the in-process and callgrind figures); what a request
does to the kernel (system calls, threads put to sleep and woken, which thrash
the caches) is where to look, and ``perf stat`` counts it per process without
changing the code. Counts per request depend on how loaded the machine is
(a slow moment means more waiting, hence more switching), so compare them in
alternating pairs (``benchkit.ab --perf``), not across runs. perf's own
overhead lowers the requests per second of a counted run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

EVENTS = {"context-switches": "switches", "raw_syscalls:sys_enter": "syscalls",
          "syscalls:sys_enter_futex": "futex"}


def available() -> bool:
    """perf is installed and may count system-call tracepoints here."""
    if shutil.which("perf") is None:
        return False
    proc = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "--", "true"],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "not supported" not in proc.stderr and "<not" not in proc.stderr


def parse(text: str) -> dict[str, float]:
    """``perf stat -x ,`` output as {short name: count}; events perf could not count are left out."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in EVENTS:
            try:
                counts[EVENTS[fields[2]]] = float(fields[0])
            except ValueError:
                continue  # "<not counted>"
    return counts


def count(pids: list[int]) -> Callable[[], dict[str, float]]:
    """Start counting for ``pids`` (every thread); the returned function stops and gives the totals."""
    out = Path(tempfile.mkstemp(prefix="llm-edge-bench-perf-", suffix=".txt")[1])
    proc = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(EVENTS),
                             "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf attaches to every thread before the load starts

    def stop() -> dict[str, float]:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        try:
            return parse(out.read_text())
        finally:
            out.unlink(missing_ok=True)
    return stop

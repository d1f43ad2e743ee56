"""Start, watch and stop the benchmark's processes, and read what they cost from /proc.

Reuses the test suite's process helpers (free ports, readiness waits,
redis-server, the gateway under gunicorn), so the benchmark and the tests
start the gateway the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support.processes import ROOT, RedisServer, free_port, terminate, wait_until

__all__ = ["ROOT", "CpuSample", "LocalServer", "Managed", "RedisServer", "child_env", "cpu_ticks", "family",
           "free_port", "load_core", "pinned", "rss_mib", "wait_until"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    """The environment for ``python -m benchkit...`` children: this folder and the repository importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])}


def load_core() -> int | None:
    """The core the load generators are pinned to (the last one), or None on a 1-core machine."""
    cores = sorted(os.sched_getaffinity(0))
    return cores[-1] if len(cores) > 1 else None


def pinned(cmd: list[str]) -> list[str]:
    """``cmd`` under ``taskset`` on the load core, so load and server do not share a core by accident."""
    core = load_core()
    if core is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(core), *cmd]


def family(pid: int) -> list[int]:
    """``pid`` and its direct children (a gunicorn master and its workers)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry))
    return [pid, *sorted(kids)]


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the name


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True)
class CpuSample:
    """CPU time of a process family at one moment, to subtract from a later one."""

    ticks: dict[int, int]

    @classmethod
    def take(cls, root_pid: int) -> CpuSample:
        return cls({pid: cpu_ticks(pid) for pid in family(root_pid)})

    def micros_since(self, earlier: CpuSample) -> float:
        used = sum(t - earlier.ticks.get(pid, 0) for pid, t in self.ticks.items())
        return used * 1_000_000 / CLK_TCK


class Managed:
    """A background process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = Path(tempfile.mkstemp(prefix=f"llm-edge-bench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> Managed:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, prefix: str, timeout: float = 15) -> str:
        """The first output line starting with ``prefix`` (a server announcing its port), waiting for it."""
        found: list[str] = []

        def announced() -> bool:
            self.check_alive()
            found[:] = [line for line in self.logs().splitlines() if line.startswith(prefix)][:1]
            return bool(found)
        wait_until(announced, timeout=timeout, what=f"{self.name} to print {prefix!r}")
        return found[0]

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout)


class LocalServer:
    """A server the benchmark runs as a ``Managed`` process on 127.0.0.1:``port`` (a floor app, a peer)."""

    port: int
    proc: Managed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> Self:
        self.proc.start()
        return self

"""One callgrind run of a benchkit module's child: the instruction total it reports.

``benchkit.instructions``, ``benchkit.event_instructions`` and ``benchkit.clouds``
count a path as the difference of two runs of the same child under callgrind,
so they run it the same way: valgrind with no output file, the total parsed
from its "Collected : N" line, and the sources byte-compiled before the first
run (a run that compiles them would count that in its total only).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
ROOT = SCRIPTS.parent
BENCH_ENV = {"PYTHONPATH": f"{SCRIPTS}:{ROOT}"}  # benchkit and app importable from the child


def compile_sources() -> None:
    """Byte-compile app/ and benchkit/, so that no counted run pays for compiling them."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "app"), str(SCRIPTS / "benchkit")],
                   check=True, capture_output=True)


def collected(module: str, args: list[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> int:
    """Instructions of ``python -m module --child *args`` under callgrind (its "Collected" total)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m", module,
           "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
                          timeout=900)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found.group(1))

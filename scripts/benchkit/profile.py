"""py-spy profiles of gateway workers under load, summed into the functions that cost most.

``record`` samples every worker for the length of a load run (py-spy attaches
from outside, so the gateway runs unchanged); ``summarize`` folds the
collapsed stacks into self time (where the CPU is) and inclusive time (which
call chain it is under), which is what a fix needs to know.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pids: list[int], seconds: float, out_dir: Path, rate: int = 250) -> list[subprocess.Popen]:
    """Start one py-spy per worker; wait for the returned processes after the load run."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install -r requirements-dev.txt")
    out_dir.mkdir(parents=True, exist_ok=True)
    # --gil: only the thread holding the GIL is sampled, so idle gthread threads do not drown the CPU time.
    return [subprocess.Popen([binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                              "--rate", str(rate), "--gil", "--nonblocking", "--format", "raw",
                              "--output", str(out_dir / f"{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def _frames(stack: str) -> list[str]:
    # py-spy raw frames look like "function (path/to/file.py:123)"; fold to "function (file.py)".
    out = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        path = where.rstrip(")").rsplit(":", 1)[0]
        short = "/".join(Path(path).parts[-2:]) if path else ""
        out.append(f"{name} ({short})" if short else name)
    return out


def summarize(files: list[Path], top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = _frames(stack)
            if frames and frames[0].startswith("process "):
                frames = frames[1:]  # py-spy's thread/process marker
            total += count
            own[frames[-1]] += count
            for name in set(frames):
                inclusive[name] += count
    if not total:
        return "no samples (is py-spy allowed to ptrace? run as root)"
    lines = [f"{total} samples of threads holding the GIL", "", "self time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)

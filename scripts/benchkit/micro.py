"""Timing small pieces of the gateway in process, and the table they print (benchkit.cache, .limiter, ...).

A whole-gateway load row moves by hundreds of microseconds from run to run on a shared 2-core machine,
which hides differences of a few microseconds; these modules time the pieces alone instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence


def mean_us(fn: Callable[[], object], calls: int, rounds: int = 1,
            pick: Callable[[list[float]], float] = statistics.median) -> float:
    """Microseconds per call of ``fn``: the mean of each of ``rounds`` rounds of ``calls`` calls, then ``pick``
    (the median is steadier on a busy machine than one long run; ``min`` takes the best of repeats)."""
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - started) / calls * 1e6)
    return pick(means)


def samples(fn: Callable[[], object], calls: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``calls`` calls of ``fn``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    clock, out = time.perf_counter, []
    for _ in range(calls):
        started = clock()
        fn()
        out.append(clock() - started)
    return out


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

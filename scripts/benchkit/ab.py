"""Two checkouts of the gateway side by side under load: is B faster than A, on a VM whose speed wanders?

Why: on a shared 2-core VM one load row moves by a third between runs, so a
before/after made of two benchmark runs minutes apart mostly measures the VM.
Here both gateways (checkout A and checkout B, e.g. ``git worktree add
/tmp/before HEAD~1`` and this one; or one checkout twice with ``--env-b`` for
a setting) run at once against the same nginx and redis-server, with the
benchmark's production settings, and each row is measured in turns, A then B,
then B then A, so both sides meet the same weather. The verdict per row is
the median of each round's own B/A ratio of requests per second, with every
round's ratio printed so the spread is visible; p50 and p99 latency and CPU
microseconds per request (every process of each gateway) come beside it.
``--connections 1`` compares latency instead of throughput. ``--perf`` counts
each run's system calls, futex calls and context switches per request in the
gateway's workers (``kernel_counts.py``; perf's overhead lowers req/s).

Rows: ``l1`` (one body repeated, after every worker's L1 holds it) and
``miss`` (unique bodies, through to the upstream). Both gateways use this
checkout's venv; each runs its own checkout's ``gunicorn.conf.py`` and code.

Run from scripts/ (PYTHONPATH=.:..):
``../.venv/bin/python -m benchkit.ab A_DIR B_DIR [--rounds 8] [--duration 5] [--rows l1,miss]
[--connections 32] [--env-b NAME=VALUE] [--perf]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from benchkit import answers, kernel_counts, nginx, wrk
from benchkit import gateway as gw
from benchkit.gateway import OPENAI_PATH, warm_l1
from benchkit.procs import family
from tests.support.processes import GatewayProcess, RedisServer

ROWS = ("l1", "miss")


@dataclass(frozen=True)
class Run:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int
    kernel: dict[str, float]  # --perf: syscalls, futex, switches per request


def kernel_text(kernel: dict[str, float]) -> str:
    return "".join(f", {kernel[k]:.1f} {k}/req" for k in ("syscalls", "futex", "switches") if k in kernel)


def measure(gateway: GatewayProcess, row: str, duration: float, connections: int, fixed: bytes,
            auth: dict[str, str], perf: bool = False) -> Run:
    headers = {"Content-Type": "application/json", **auth}
    if row == "l1":
        warm_l1(gateway, fixed, auth, connections)
        script = wrk.lua_script(OPENAI_PATH, headers, fixed)
    else:  # a warm-up of unique bodies, then new unique bodies (a new script numbers them afresh)
        template = answers.template(answers.openai_request)
        wrk.run(gateway.url, wrk.lua_script(OPENAI_PATH, headers, None, template), connections=connections,
                duration=1)
        script = wrk.lua_script(OPENAI_PATH, headers, None, template)
    stop_counting = kernel_counts.count(family(gateway.proc.pid)[1:]) if perf else None
    result, cpu = wrk.timed_run(gateway.url, script, gateway.proc.pid, connections=connections, duration=duration)
    requests = max(1, result.requests)
    kernel = {k: v / requests for k, v in stop_counting().items()} if stop_counting else {}
    return Run(result.rps, cpu / requests, result.p50_ms, result.p99_ms, result.errors, kernel)


def summary(row: str, a: list[Run], b: list[Run]) -> str:
    ratios = [y.rps / x.rps for x, y in zip(a, b, strict=True) if x.rps]
    per_round = " / ".join(f"{r:.2f}" for r in ratios)

    def side(runs: list[Run]) -> str:
        kernel = {k: statistics.median(r.kernel[k] for r in runs) for k in runs[0].kernel}
        return (f"{statistics.median(r.rps for r in runs):,.0f} req/s, "
                f"p50 {statistics.median(r.p50_ms for r in runs):.3f} ms, "
                f"p99 {statistics.median(r.p99_ms for r in runs):.3f} ms, "
                f"{statistics.median(r.cpu_us for r in runs):,.0f} us/req{kernel_text(kernel)}")
    return (f"{row}: A {side(a)}; B {side(b)}; B/A {statistics.median(ratios):.3f} (rounds {per_round}); "
            f"errors A {sum(r.errors for r in a)}, B {sum(r.errors for r in b)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="checkout A (the baseline)")
    parser.add_argument("b", type=Path, help="checkout B (the change)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5, help="seconds of load per row, side and round")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (1: latency, not load)")
    parser.add_argument("--perf", action="store_true",
                        help="count system calls and context switches per request (needs perf)")
    parser.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE",
                        help="gateway environment for B only (a setting to price)")
    args = parser.parse_args()
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if any("=" not in e for e in args.env_b):
        parser.error("--env-b takes NAME=VALUE")
    for checkout in (args.a, args.b):
        if not (checkout / "gunicorn.conf.py").exists():
            parser.error(f"{checkout} is not a checkout of the gateway (no gunicorn.conf.py)")
    if not (wrk.available() and nginx.available()):
        sys.exit("benchkit.ab needs wrk and nginx (scripts/install-test-tools.sh installs them)")
    if args.perf and not kernel_counts.available():
        sys.exit("--perf needs perf with system-call tracepoints (Debian: linux-perf; as root)")

    upstream = nginx.NginxUpstream().start()
    redis = RedisServer().start()
    config = gw.BenchConfig(None)
    gateways: dict[str, GatewayProcess] = {}
    try:
        for side, checkout, extra in (("A", args.a, {}), ("B", args.b, dict(e.split("=", 1) for e in args.env_b))):
            g = gw.gateway(upstream=upstream, redis_url=redis.url, config=config, workers=2, threads=768, extra=extra)
            g.cwd = checkout.resolve()
            gateways[side] = g.start()
        fixed = answers.openai_request("What is the capital of France? (cached)")
        auth = gw.auth_headers()
        runs: dict[tuple[str, str], list[Run]] = {(s, r): [] for s in "AB" for r in rows}
        for i in range(args.rounds):
            for row in rows:
                for side in ("AB" if i % 2 == 0 else "BA"):
                    run = measure(gateways[side], row, args.duration, args.connections, fixed, auth, args.perf)
                    runs[(side, row)].append(run)
                    print(f"round {i + 1} {row} {side}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.3f} ms, "
                          f"p99 {run.p99_ms:.3f} ms, "
                          f"{run.cpu_us:,.0f} us/req{kernel_text(run.kernel)}, errors {run.errors}", flush=True)
        print(f"A: {args.a}\nB: {args.b}{' with ' + ' '.join(args.env_b) if args.env_b else ''}\n"
              f"wrk -c{args.connections}, {args.duration:g} s per row, side and round")
        for row in rows:
            print(summary(row, runs[("A", row)], runs[("B", row)]))
    finally:
        for g in gateways.values():
            g.stop()
        upstream.stop()
        redis.close()
        config.cleanup()


if __name__ == "__main__":
    main()

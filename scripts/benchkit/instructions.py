"""Instructions per request of the gateway's own code, counted by callgrind: a figure noise cannot move.

On a shared 2-core VM the same load row varies by a third between runs, and
even CPU time per request in one process moves by a fifth. Callgrind counts
the instructions the process executes (user space; system calls are one
instruction each, their kernel time is not counted), and the count repeats
from run to run. Each path runs twice in a fresh process under callgrind,
with a small and a large number of requests; the difference divided by the
extra requests is the cost of one request, with start-up and warm-up taken
out. The app is built exactly as a worker builds it (``create_gateway``:
metrics, JSON access log, L1 + L2 on a real redis-server, rate limits, client
auth) and called as a WSGI app, against nginx as the upstream.

The floors are counted the same way (``constant`` and ``passthrough``, the
benchmark's own floor apps with the library patches), and the table gives
the gateway's own instructions per request: a hit minus the constant floor, a
miss minus the passthrough floor. That is the part of the load benchmark's
ratios the gateway's code decides, without the noise; what it leaves out is
kernel time (the cache's Redis round trips, the access line's write) and
threads waiting for the GIL. ``--env NAME=VALUE`` counts a gateway variant
(``LOG_LEVEL=warning``: what the access line costs).

Run: ``.venv/bin/python -m benchkit.instructions [--paths hit,miss,constant,passthrough] [--env NAME=VALUE]``
from scripts/ (PYTHONPATH=.:..); needs valgrind. About a minute per path.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys

from benchkit import answers, callgrind

GATEWAY_PATHS = ("hit", "miss")
FLOOR_OF = {"hit": "constant", "miss": "passthrough"}  # the least each path could cost


def child(path: str, n: int, redis_url: str, openai_url: str, anthropic_url: str, extra: list[str]) -> None:
    """Inside valgrind: build the app, warm it up, then serve ``n`` requests of ``path``."""
    from benchkit import gateway as gw
    from benchkit.inprocess import measure, worker_app

    class Upstream:
        openai_base_url, anthropic_base_url = openai_url, anthropic_url

    config = gw.BenchConfig(None)
    log = open(os.devnull, "w")  # the access lines are formatted and written, then dropped
    sys.stderr = log
    try:
        if path in GATEWAY_PATHS:
            app = worker_app(Upstream, redis_url, config, dict(e.split("=", 1) for e in extra))
            headers = gw.auth_headers()
        else:
            app, headers = floor_app(path, openai_url), {}
        warm, bodies = request_bodies(path, n)
        for body in warm:
            measure(app, [body], headers)
        # A full collection of the start-up heap lands in one run's measured part and not the other's at
        # random (~80,000 instructions per request either way); frozen, the collector skips that heap.
        gc.collect()
        gc.freeze()
        measure(app, bodies, headers)
    finally:
        sys.stderr = sys.__stderr__
        config.cleanup()


def request_bodies(path: str, n: int, run: str | None = None) -> tuple[list[bytes], list[bytes]]:
    """The warm-up's bodies and the ``n`` measured ones: one body repeated (hit, constant), or unique bodies.

    Unique bodies carry a nonce of their run: the small and the large run share one redis-server, and
    with the same prompts the large run would find the small run's answers in L2, so part of what it
    counted as misses were L2 hits (a miss counted ~1,290,000 instead of ~1,610,000 with L2 on).
    """
    if path in ("hit", "constant"):
        same = answers.openai_request("the same prompt")
        return [same] * 60, [same] * n
    run = run or secrets.token_hex(4)
    return ([answers.openai_request(f"warm {run} {i}") for i in range(60)],
            [answers.openai_request(f"unique {run} {i}") for i in range(n)])


def floor_app(kind: str, openai_url: str):  # type: ignore[no-untyped-def]
    """The benchmark's floor app, built from the source its gunicorn runs."""
    from benchkit import floors

    namespace: dict = {}
    if kind == "constant":
        exec(floors.CONSTANT_APP.format(answer=answers.openai_json()), namespace)
    else:  # the floor forwards the request's own path (/v1/...) to the upstream's origin
        exec(floors.PASSTHROUGH_APP.format(upstream=openai_url.rsplit("/v1", 1)[0], threads=8), namespace)
    return namespace["app"]


def count(path: str, n: int, redis_url: str, upstream, extra: list[str]) -> int:
    return callgrind.collected("benchkit.instructions", [path, str(n), redis_url, upstream.openai_base_url,
                                                          upstream.anthropic_base_url, *extra],
                               callgrind.BENCH_ENV, callgrind.ROOT)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), *sys.argv[4:7], sys.argv[7:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="hit,miss,constant,passthrough",
                        help="hit (L1 hit, one body), miss (unique bodies), and the floors constant, passthrough")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="more gateway environment (a variant to price)")
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=350)
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - {*GATEWAY_PATHS, *FLOOR_OF.values()}
    if unknown or any("=" not in e for e in args.env):
        parser.error(f"unknown paths {sorted(unknown)} or an --env without '='")
    from benchkit import nginx
    from benchkit.procs import RedisServer

    callgrind.compile_sources()
    upstream = nginx.NginxUpstream().start()
    redis = RedisServer().start()
    per: dict[str, float] = {}
    try:
        for path in paths:
            small, large = (count(path, n, redis.url, upstream, args.env) for n in (args.small, args.large))
            per[path] = (large - small) / (args.large - args.small)
            print(f"{path}: {per[path]:,.0f} instructions per request "
                  f"({args.small} and {args.large} requests: {small:,} and {large:,})", flush=True)
    finally:
        upstream.stop()
        redis.close()
    for path, floor in FLOOR_OF.items():
        if path in per and floor in per:
            print(f"the gateway's own on a {path}: {per[path] - per[floor]:,.0f} instructions per request "
                  f"({path} minus the {floor} floor; the floor is {per[floor] / per[path]:.0%} of the {path})")
    if args.env:
        print("gateway environment added: " + " ".join(args.env))


if __name__ == "__main__":
    main()

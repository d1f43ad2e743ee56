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

Run: ``.venv/bin/python -m benchkit.instructions [--paths hit,miss]`` from scripts/
(PYTHONPATH=.:..); needs valgrind. About a minute per path.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from benchkit import answers

SCRIPTS = Path(__file__).resolve().parents[1]


def child(path: str, n: int, redis_url: str, openai_url: str, anthropic_url: str) -> None:
    """Inside valgrind: build the app, warm it up, then serve ``n`` requests of ``path``."""
    from benchkit import gateway as gw
    from benchkit.inprocess import measure, worker_app

    class Upstream:
        openai_base_url, anthropic_base_url = openai_url, anthropic_url

    config = gw.BenchConfig(None)
    log = open(os.devnull, "w")  # the access lines are formatted and written, then dropped
    sys.stderr = log
    try:
        app = worker_app(Upstream, redis_url, config)
        headers = gw.auth_headers()
        same = answers.openai_request("the same prompt")
        for i in range(60):
            measure(app, [same if path == "hit" else answers.openai_request(f"warm {i}")], headers)
        bodies = [same] * n if path == "hit" else [answers.openai_request(f"unique {i}") for i in range(n)]
        measure(app, bodies, headers)
    finally:
        sys.stderr = sys.__stderr__
        config.cleanup()


def count(path: str, n: int, redis_url: str, upstream) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
           "benchkit.instructions", "--child", path, str(n), redis_url, upstream.openai_base_url,
           upstream.anthropic_base_url]
    env = {**os.environ, "PYTHONPATH": f"{SCRIPTS}:{SCRIPTS.parent}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=SCRIPTS.parent, timeout=900)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), *sys.argv[4:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="hit,miss", help="hit (L1 hit, one body), miss (unique bodies)")
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--large", type=int, default=350)
    args = parser.parse_args()
    from benchkit import nginx
    from benchkit.procs import RedisServer

    upstream = nginx.NginxUpstream().start()
    redis = RedisServer().start()
    try:
        for path in args.paths.split(","):
            small, large = (count(path, n, redis.url, upstream) for n in (args.small, args.large))
            per = (large - small) / (args.large - args.small)
            print(f"{path}: {per:,.0f} instructions per request "
                  f"({args.small} and {args.large} requests: {small:,} and {large:,})")
    finally:
        upstream.stop()
        redis.close()


if __name__ == "__main__":
    main()

"""Cost growth: CPU per request and RSS against body size, L1 entries, configured models and client keys.

Each point runs in a fresh process (so its RSS is its own), which builds the
app exactly as a gunicorn worker does (``inprocess.worker_gateway``: metrics,
JSON access log, L1 + L2 on a private redis-server, limits, client auth),
calls it as a WSGI app against nginx as the upstream, and reports:

- CPU µs per request: ``time.process_time`` around each call (the request
  bodies are made outside it), best of ``--rounds`` rounds. Timings move with
  the machine's load (the header prints it); ``--instructions`` adds
  callgrind counts for the body, model and client points, which do not:
  each point's path runs twice under callgrind, with few and with more
  requests, and the difference per extra request is its count.
- RSS: VmRSS after the point's L1 hits (so the L1 table shows what its
  entries hold), and the peak (VmHWM) after everything the point sent.

The dimensions (``--dimensions``):

- ``body``: one user message of ~1 KB to 1 MB; misses (unique bodies) and L1
  hits (one body repeated). The upstream answers the same small body.
- ``l1``: L1 hits and misses with the L1 filled (distinct requests) to 0, 1k,
  10k entries and full: ``L1_CACHE_SIZE`` is set to the last point for this
  table (the default is 1,000; the small answers never reach ``L1_MAX_BYTES``).
  At full, each miss evicts. No callgrind here: filling runs too long under it.
- ``models``: 1 to 1,000 models in ``MODELS_FILE``, the request naming the last.
- ``clients``: 1 to 10,000 keys in ``CLIENTS_FILE``, the request using the last.

Every answer's ``x-llm-edge-cache`` header is checked (``miss`` or ``hit-l1``), so
a row never prices the wrong path. Run from scripts/ (PYTHONPATH=.:..):
``../.venv/bin/python -m benchkit.growth [--dimensions body,l1,models,clients] [--instructions] [--quick]``;
a few minutes without ``--instructions``, half an hour or more with it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchkit import answers, callgrind

DIMENSIONS = ("body", "l1", "models", "clients")
POINTS = {"body": (1_000, 10_000, 100_000, 1_000_000), "l1": (0, 1_000, 10_000, 20_000),
          "models": (1, 100, 1_000), "clients": (1, 100, 10_000)}
QUICK_POINTS = {"body": (1_000, 20_000), "l1": (0, 20, 40), "models": (1, 10), "clients": (1, 10)}
PATHS = ("hit", "miss")  # hits first: at a full L1 the misses evict
WARM = 20
SMALL_PROMPT = 1_000  # the prompt of every dimension but ``body``
FILLER = b"The quick brown fox jumps over the lazy dog while the gateway hashes every byte. "
KIB_BUDGET = 4_096  # a body-size point sends about requests * this many KiB (fewer requests for 1 MB bodies)


def scaled(requests: int, prompt_bytes: int, least: int) -> int:
    """Fewer requests for big bodies, so that each point sends a bounded number of bytes."""
    return max(least, min(requests, requests * KIB_BUDGET // max(prompt_bytes, 1)))


# --- the child: one point in its own process ----------------------------------------------------------------


@dataclass(frozen=True)
class Bodies:
    """The request bodies of one point: a template around a prompt of a chosen size."""

    head: bytes
    tail: bytes
    prompt_bytes: int
    run: str

    @classmethod
    def of(cls, model: str, prompt_bytes: int) -> Bodies:
        head, tail = answers.template(answers.openai_request, model=model)
        return cls(head.encode(), tail.encode(), prompt_bytes, secrets.token_hex(4))

    def one(self, tag: str) -> bytes:
        """``tag`` (which makes the body unique) then filler up to the prompt size; one copy of the filler."""
        start = f"{tag} {self.run} ".encode()
        need = max(self.prompt_bytes - len(start), 0)
        filler = FILLER * (need // len(FILLER) + 1)
        return b"".join((self.head, start, memoryview(filler)[:need], self.tail))

    def unique(self, label: str, n: int) -> Iterator[bytes]:
        return (self.one(f"{label} {i}") for i in range(n))


def configure(config, dimension: str, value: int) -> str:  # type: ignore[no-untyped-def]
    """Write the point's models or clients file into the benchmark config; the model the requests name."""
    from benchkit import gateway as gw

    if dimension == "models":
        lines = ["models:"]
        for i in range(value):  # aliases of the upstream's model, as an operator lists them
            lines += [f"  bench-model-{i:05d}:", "    provider: openai", f"    model: {answers.OPENAI_MODEL}"]
        (config.dir / "models.yaml").write_text("\n".join(lines) + "\n")
        return f"bench-model-{value - 1:05d}"
    if dimension == "clients":
        lines = ["clients:"]
        for i in range(value - 1):
            digest = hashlib.sha256(f"growth-client-{i}".encode()).hexdigest()
            lines += [f"  - id: growth-{i}", "    tier: pro", f"    key_sha256: {digest}"]
        digest = hashlib.sha256(gw.CLIENT_KEY.encode()).hexdigest()  # the benchmark's key, last in the file
        lines += ["  - id: bench", "    tier: enterprise", f"    key_sha256: {digest}"]
        (config.dir / "clients.yaml").write_text("\n".join(lines) + "\n")
    return answers.OPENAI_MODEL


def serve(app, bodies: Iterable[bytes], headers: dict[str, str], expect: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """CPU seconds the app spent on ``bodies`` (bodies made outside the clock), and how many were sent."""
    from benchkit.inprocess import environ

    seen: list[str | None] = [None]

    def start_response(status, hdrs, exc_info=None):  # type: ignore[no-untyped-def]
        if not status.startswith("200"):
            raise RuntimeError(f"gateway answered {status}")
        seen[0] = next((v for k, v in hdrs if k.lower() == "x-llm-edge-cache"), None)

    spent, n = 0.0, 0
    for body in bodies:
        # A copy, as a server reads each request's bytes afresh: the repeated body object itself would come back
        # from ``wsgi.input`` with its hash already cached, and a hit would never pay for hashing its bytes.
        env = environ(bytes(memoryview(body)), headers)
        started = time.process_time()
        answer = app(env, start_response)
        for _chunk in answer:
            pass
        if hasattr(answer, "close"):
            answer.close()  # as a WSGI server does: the deferred L2 fill runs here
        spent += time.process_time() - started
        n += 1
        if seen[0] != expect:
            raise RuntimeError(f"expected x-llm-edge-cache: {expect}, the gateway answered {seen[0]}")
    return spent, n


def memory_mib() -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def child(spec: dict) -> dict:
    """Build the app for one point, warm it, fill L1 if asked, then time each path; memory after."""
    from benchkit import gateway as gw
    from benchkit.inprocess import worker_gateway

    class Upstream:
        openai_base_url, anthropic_base_url = spec["openai"], spec["anthropic"]

    dimension, value = spec["dimension"], spec["value"]
    config = gw.BenchConfig(None)
    sys.stderr = open(os.devnull, "w")  # the access lines are formatted and written, then dropped
    try:
        model = configure(config, dimension, value)
        extra = {**spec["env"], **({"L1_CACHE_SIZE": str(spec["l1_size"])} if dimension == "l1" else {})}
        gateway = worker_gateway(Upstream, spec["redis"], config, extra)
        app, l1, headers = gateway.app, gateway.cache.tiers.l1, gw.auth_headers()
        bodies = Bodies.of(model, value if dimension == "body" else SMALL_PROMPT)
        hit_body = bodies.one("the same prompt")
        warm = spec["warm"]
        serve(app, [hit_body], headers, "miss")
        serve(app, [hit_body] * warm, headers, "hit-l1")
        serve(app, bodies.unique("warm", warm), headers, "miss")
        if dimension == "l1":
            serve(app, bodies.unique("fill", max(value - len(l1), 0)), headers, "miss")
        result: dict = {"entries": len(l1), "base_mib": memory_mib()["VmRSS"]}
        gc.collect()
        gc.freeze()  # the start-up heap is not re-collected at random inside one path's requests
        n = spec["requests"]
        for path in spec["paths"]:
            best = float("inf")
            for r in range(spec["rounds"]):
                batch = [hit_body] * n if path == "hit" else bodies.unique(f"{path} round {r}", n)
                spent, sent = serve(app, batch, headers, "hit-l1" if path == "hit" else "miss")
                best = min(best, spent / sent * 1e6)
            result[path] = best
            if path == "hit":
                result["rss_mib"] = memory_mib()["VmRSS"]
        result.setdefault("rss_mib", memory_mib()["VmRSS"])
        result["peak_mib"] = memory_mib()["VmHWM"]
        return result
    finally:
        sys.stderr = sys.__stderr__
        config.cleanup()


# --- the parent: points, children, tables -------------------------------------------------------------------


@dataclass
class Runner:
    redis: str
    openai: str
    anthropic: str
    requests: int
    rounds: int
    instructions: bool
    small: int
    large: int
    env: dict[str, str]

    def spec(self, dimension: str, value: int, l1_size: int, paths: Iterable[str], requests: int,
             rounds: int) -> dict:
        prompt = value if dimension == "body" else SMALL_PROMPT
        return {"dimension": dimension, "value": value, "l1_size": l1_size, "paths": list(paths),
                "requests": requests, "rounds": rounds, "warm": scaled(min(WARM, self.requests), prompt, 2),
                "env": self.env, "redis": self.redis, "openai": self.openai,
                "anthropic": self.anthropic}

    def timed(self, dimension: str, value: int, l1_size: int) -> dict:
        prompt = value if dimension == "body" else SMALL_PROMPT
        spec = self.spec(dimension, value, l1_size, PATHS, scaled(self.requests, prompt, 8), self.rounds)
        proc = subprocess.run([sys.executable, "-m", "benchkit.growth", "--child", json.dumps(spec)],
                              capture_output=True, text=True, env={**os.environ, **callgrind.BENCH_ENV},
                              cwd=callgrind.ROOT, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{dimension}={value} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def counted(self, dimension: str, value: int, path: str) -> float:
        """Instructions per request of ``path`` at this point: two callgrind runs, the difference per request."""
        prompt = value if dimension == "body" else SMALL_PROMPT
        small = scaled(self.small, prompt, 2)
        large = max(scaled(self.large, prompt, 6), small + 4)
        totals = [callgrind.collected("benchkit.growth", [json.dumps(self.spec(dimension, value, 0, [path], n, 1))],
                                      callgrind.BENCH_ENV, callgrind.ROOT) for n in (small, large)]
        return (totals[1] - totals[0]) / (large - small)


def table(dimension: str, points: tuple[int, ...], runner: Runner, progress: Callable[[str], None]) -> list[str]:
    """One markdown table: a row per point."""
    label = {"body": "prompt", "l1": "L1 entries", "models": "models", "clients": "client keys"}[dimension]
    counting = runner.instructions and dimension != "l1"
    cols = [label, "miss µs", "hit µs"]
    if counting:
        cols += ["miss instructions", "hit instructions"]
    cols += ["RSS MiB", "peak MiB"]
    if dimension == "l1":
        cols[1:3] = ["hit µs", "miss µs"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for value in points:
        progress(f"{dimension}={value}")
        got = runner.timed(dimension, value, points[-1])
        name = f"{value / 1000:g} KB" if dimension == "body" else f"{value:,}"
        if dimension == "l1":
            name = f"{got['entries']:,}" + (" (full)" if value == points[-1] else "")
            cells = [name, f"{got['hit']:,.0f}", f"{got['miss']:,.0f}"]
        else:
            cells = [name, f"{got['miss']:,.0f}", f"{got['hit']:,.0f}"]
        if counting:
            cells += [f"{runner.counted(dimension, value, path):,.0f}" for path in ("miss", "hit")]
        cells += [f"{got['rss_mib']:.1f}", f"{got['peak_mib']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))), file=sys.__stdout__, flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimensions", default=",".join(DIMENSIONS), help="body, l1, models, clients")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per round (fewer for big bodies)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per path; the best is reported")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    parser.add_argument("--small", type=int, default=20, help="requests of the small callgrind run")
    parser.add_argument("--large", type=int, default=100, help="requests of the large callgrind run")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="more gateway environment (RATE_LIMIT_LEASE_MS=0: no renewals timed by the clock)")
    parser.add_argument("--quick", action="store_true", help="tiny points and counts: checks that it runs")
    args = parser.parse_args()
    dimensions = [d for d in args.dimensions.split(",") if d]
    if set(dimensions) - set(DIMENSIONS) or any("=" not in e for e in args.env):
        parser.error(f"unknown dimensions {sorted(set(dimensions) - set(DIMENSIONS))} or an --env without '='")
    points = QUICK_POINTS if args.quick else POINTS
    if args.quick:
        args.requests, args.rounds, args.small, args.large = 12, 1, 2, 4
    from benchkit import nginx
    from benchkit.procs import RedisServer

    print("# Cost growth\n")
    print("command: " + shlex.join([sys.executable, "-m", "benchkit.growth", *sys.argv[1:]]))
    print("load average at start: {:.2f} {:.2f} {:.2f} ({} cores)".format(*os.getloadavg(), os.cpu_count()))
    print(f"CPU: best of {args.rounds} rounds of up to {args.requests} requests per path and point "
          "(time.process_time; the machine may be shared, so timings move with its load)", flush=True)
    if args.instructions:
        callgrind.compile_sources()
    upstream = nginx.NginxUpstream().start()
    redis = RedisServer().start()
    runner = Runner(redis.url, upstream.openai_base_url, upstream.anthropic_base_url, args.requests, args.rounds,
                    args.instructions, args.small, args.large, dict(e.split("=", 1) for e in args.env))
    titles = {"body": "Body size (one user message)", "l1": f"L1 entries (L1_CACHE_SIZE={points['l1'][-1]:,})",
              "models": "Models in MODELS_FILE", "clients": "Client keys in CLIENTS_FILE"}
    try:
        for dimension in dimensions:
            lines = table(dimension, points[dimension], runner, lambda p: print(f"  ... {p}", file=sys.stderr,
                                                                                 flush=True))
            print(f"\n## {titles[dimension]}\n")
            print("\n".join(lines), flush=True)
    finally:
        upstream.stop()
        redis.close()
    print("\nload average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The benchmark: one command, one table (docs/performance.md says how to read it).

    .venv/bin/python scripts/bench.py [--quick]        (or scripts/bench, which installs what it needs)

Starts a fast local upstream (nginx with fixed OpenAI and Anthropic answers,
else the project's emulator), a private redis-server, the gateway under
gunicorn with production settings (gunicorn.conf.py, metrics, L1 + L2, rate
limits, client auth, JSON logs at info to a file), a second gateway with
L1_CACHE_SIZE=0 for the L2 row, and the two floors (minimal Falcon apps under
the same gunicorn settings). Load comes from wrk and small asyncio clients
pinned to the last core. It prints one table (requests/s, p50/p90/p99,
CPU per request, RSS per worker) and the targets judged from it.

How L1 and L2 hits are told apart: the L1 row repeats one body on the main
gateway after a warm-up that fills every worker's L1; the L2 row repeats one
body on a gateway whose L1 is off (L1_CACHE_SIZE=0) and whose coalescing of
identical concurrent requests is off (CACHE_COALESCING=false, or most requests
would wait for another's lookup instead of doing their own), so every answer
comes from Redis. The notes column shows the share of each tier, read from
the gateway's own metrics during the run, so a mix-up is visible.

Everything binds to 127.0.0.1 and every load loop ends by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]

import urllib3  # noqa: E402
from benchkit import answers, plot, profile, wrk  # noqa: E402
from benchkit import gateway as gw  # noqa: E402
from benchkit.cpusplit import CpuSplit, WindowSampler, machine_cores  # noqa: E402
from benchkit.cpusplit import summary as cpu_summary  # noqa: E402
from benchkit.floors import FloorApp  # noqa: E402
from benchkit.gateway import EMBEDDINGS_PATH, OPENAI_PATH, warm_l1  # noqa: E402
from benchkit.peers import DEFAULT_VENV, PEER_NAMES, Peer, install, make_peer  # noqa: E402
from benchkit.procs import CpuSample, child_env, family, load_core, pinned, rss_mib  # noqa: E402
from benchkit.report import Report, Row, Target  # noqa: E402
from benchkit.upstream import DripServer, LocalUpstream, choose_upstream  # noqa: E402

from app.config.settings import Settings  # noqa: E402
from tests.support.processes import GatewayProcess, RedisServer  # noqa: E402

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=15), maxsize=64)

ANTHROPIC_PATH = "/v1/messages"
DRIP_WORDS = 11  # text events per slow answer: 15 events in all


@dataclass(frozen=True)
class Plan:
    """Durations and sizes of one run; ``--quick`` shrinks them, never drops a row."""

    duration: float
    warmup: float
    connections: int
    stream_concurrency: int
    ramp_levels: tuple[int, ...]
    drip_interval: float
    spread: float
    first_byte_limit: float
    ramp_budget: float
    rounds: int = 1
    scale_levels: tuple[int, ...] = ()  # open streams of the streams-at-scale rows
    scale_duration: float = 0.0  # seconds counted per level

    @classmethod
    def make(cls, args: argparse.Namespace) -> Plan:
        cap = args.stream_cap
        scale = tuple(int(n) for n in args.scale_levels.split(",") if n)
        if args.quick:
            levels = tuple(n for n in (10, 20) if n <= cap) or (cap,)
            return cls(1, 0, args.connections, 4, levels, 0.05, 0.3, 2.0, 5, args.rounds, (20,), 2.0)
        levels = (*(n for n in (100, 250, 500, 750, 1000) if n < cap), cap)
        # The drip: 15 events 0.2 s apart, a 2.8 s answer, like a model writing ~50 tokens a second.
        return cls(args.duration, 2, args.connections, args.stream_concurrency, levels, 0.2, 2.0, 2.0, 90,
                   args.rounds, scale, max(10.0, args.duration))


# --- measuring ------------------------------------------------------------------------------------


def worker_rss(master_pid: int) -> float | None:
    """The largest resident set of the master's children (the workers), or of a lone process, in MiB."""
    workers = family(master_pid)[1:] or [master_pid]
    return max((rss_mib(p) for p in workers), default=None)


def cache_note(before: dict[str, float], after: dict[str, float]) -> str:
    served = after["requests"] - before["requests"]
    if served <= 0:
        return "no requests counted"
    if after["hit_l1"] + after["hit_l2"] + after["miss_l1"] + after["miss_l2"] == 0:
        return "no cache metrics (cache not in this build?)"

    def share(name: str) -> str:
        return f"{100 * (after[name] - before[name]) / served:.0f}%"
    upstream = 100 * (1 - (after["from_cache"] - before["from_cache"]) / served)
    note = f"L1 {share('hit_l1')}, L2 {share('hit_l2')}, upstream {upstream:.0f}%"
    return note + (f", coalesced {share('coalesced')}" if after["coalesced"] > before["coalesced"] else "")


def probe(url: str, body: bytes, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
    """One request that must succeed before a scenario is worth measuring."""
    resp = _http.request("POST", url, body=body, headers={"content-type": "application/json", **(headers or {})})
    if resp.status != 200:
        raise RuntimeError(f"probe of {url} answered {resp.status}: {resp.data[:500]!r}")
    return resp


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.plan = Plan.make(args)
        defaults = Settings()
        self.workers = args.workers or defaults.web_concurrency
        self.threads = args.threads or defaults.gunicorn_threads
        self.report = Report()
        self.profiles: list[str] = []
        self.ttft_p50: dict[str, float] = {}  # stream row -> time to first token, p50 ms
        self.scale_cpu: dict[str, dict[int, CpuSplit]] = {}  # streams-at-scale set -> level -> CPU split

    # one wrk scenario -> one row
    def wrk_row(self, name: str, base_url: str, path: str, root_pid: int, *, body: bytes | None = None,
                template: tuple[str, str] | None = None, headers: dict[str, str] | None = None,
                connections: int | None = None, metrics_url: str | None = None, note: str = "",
                profile_as: str | None = None) -> Row:
        connections = connections or self.plan.connections
        def script() -> str:  # a new one per run: a unique-body script must not repeat the warm-up's bodies
            return wrk.lua_script(path, {"Content-Type": "application/json", **(headers or {})}, body, template)
        if self.plan.warmup:
            wrk.run(base_url, script(), connections=connections, duration=self.plan.warmup)
        before_metrics = gw.scrape(metrics_url) if metrics_url else None
        finish_profile = self.start_profile(profile_as, name, root_pid)
        result, cpu = wrk.timed_run(base_url, script(), root_pid, connections=connections,
                                    duration=self.plan.duration)
        finish_profile()
        if before_metrics is not None:
            note = ", ".join(filter(None, [note, cache_note(before_metrics, gw.scrape(metrics_url))]))
        row = Row(name, result.rps, result.p50_ms, result.p90_ms, result.p99_ms,
                  cpu / result.requests if result.requests else None, worker_rss(root_pid), result.errors, note)
        self.report.rows.append(row)
        return row

    def start_profile(self, profile_as: str | None, name: str, root_pid: int) -> Callable[[], None]:
        """py-spy on every worker for the row's duration when ``--profile`` names it; call the result after."""
        if not profile_as or profile_as not in self.args.profile:
            return lambda: None
        out = Path(tempfile.mkdtemp(prefix=f"llm-edge-bench-profile-{profile_as}-"))
        spies = profile.record(family(root_pid)[1:], self.plan.duration, out)

        def finish() -> None:
            for spy in spies:
                spy.wait(60)
            self.profiles.append(f"== profile: {name}\n" + profile.summarize(sorted(out.glob("*.txt"))))
        return finish

    def stream_row(self, name: str, port: int, root_pid: int, headers: dict[str, str], concurrency: int, *,
                   model: str = answers.OPENAI_MODEL, profile_as: str | None = None) -> Row:
        head, tail = answers.template(answers.openai_request, model=model, stream=True)
        cfg = {"host": "127.0.0.1", "port": port, "path": OPENAI_PATH, "head": head, "tail": tail,
               "headers": headers, "concurrency": concurrency, "duration": self.plan.duration}
        if self.plan.warmup:
            run_streams("latency", {**cfg, "duration": self.plan.warmup})
        finish_profile = self.start_profile(profile_as, name, root_pid)
        before = CpuSample.take(root_pid)
        r = run_streams("latency", cfg)
        cpu = CpuSample.take(root_pid).micros_since(before)
        finish_profile()
        self.ttft_p50[name] = r["ttft_p50"]
        note = f"TTFT p50 {r['ttft_p50']:.2f} ms, p99 {r['ttft_p99']:.2f} ms; c={concurrency}, Python client"
        if r["error_sample"]:
            note += f"; e.g. {r['error_sample'][0]}"
        row = Row(name, r["requests"] / r["seconds"], r["p50"], r["p90"], r["p99"],
                  cpu / r["requests"] if r["requests"] else None, worker_rss(root_pid), r["errors"], note)
        self.report.rows.append(row)
        return row

    def scale_rows(self, name: str, port: int, root_pid: int, headers: dict[str, str], drip: DripServer, *,
                   path: str = OPENAI_PATH, build: Callable[..., bytes] = answers.openai_request,
                   model: str = answers.SLOW_MODEL) -> list[Row]:
        """Streams at scale: at each level, that many clients asking for slow streams back to back.

        req/s is streams finished per second; p50/p99 are the *stretch* (a stream's total time minus the
        upstream's own); RSS is the largest worker's, sampled while the level runs. CPU is the gateway's
        (master and workers) per stream ended in the counted window, over exactly that window; the notes
        add the drip upstream's and the clients' (``benchkit.cpusplit``). A level with more than a tenth
        of its streams failed ends the rows: the next would only fail more.
        """
        head, tail = answers.template(build, model=model, stream=True)
        rows = []
        for level in self.plan.scale_levels:
            cfg = {"host": "127.0.0.1", "port": port, "path": path, "head": head, "tail": tail, "headers": headers,
                   "level": level, "duration": self.plan.scale_duration, "stream_seconds": drip.stream_seconds,
                   "stream_timeout": drip.stream_seconds + 30}
            window = WindowSampler(root_pid, drip.proc.pid, server="peer" if name.startswith("peer") else "gateway")
            with RssSampler(root_pid) as rss:
                r = run_streams("sustain", cfg, timeout=2 * drip.stream_seconds + self.plan.scale_duration + 90,
                                on_mark=window.on_mark)
            split = window.split(r["ended"])
            kinds = "; ".join(f"{k} x{v}" for k, v in r["failures"].items())
            note = (f"{r['streams']} streams started in {self.plan.scale_duration:g} s; req/s is streams ended per "
                    f"second, p50/p99 the stretch (total minus the upstream's {drip.stream_seconds:.1f} s), "
                    f"time to the first byte p50 {r['first_byte_p50']:.0f} ms, p99 "
                    f"{r['first_byte_p99']:.0f} ms"
                    + (f"; {split.note()}" if split else "") + (f"; {kinds}" if kinds else ""))
            cpu = split.micros["gateway"] / split.streams if split and split.streams else None
            ok = r["streams"] > 0  # with no stream ended whole there is no stretch (not a stretch of 0)
            row = Row(f"{name}, {level} open streams", r["streams_per_s"], r["stretch_p50"] if ok else None, None,
                      r["stretch_p99"] if ok else None, cpu, rss.peak, r["failed"], note)
            self.report.rows.append(row)
            rows.append(row)
            if split:
                self.scale_cpu.setdefault(name, {})[level] = split
            if r["failed"] > max(1, r["streams"] // 10):
                break
        return rows

    def ramp_row(self, gateway: GatewayProcess, drip: DripServer) -> tuple[Row, int]:
        plan = self.plan
        stream_seconds = drip.stream_seconds
        head, tail = answers.template(answers.openai_request, model=answers.SLOW_MODEL, stream=True)
        cfg = {"host": "127.0.0.1", "port": gateway.port, "path": OPENAI_PATH, "head": head, "tail": tail,
               "headers": gw.auth_headers(), "levels": list(plan.ramp_levels), "spread": plan.spread,
               "first_byte_limit": plan.first_byte_limit, "stream_timeout": stream_seconds + 15,
               "time_budget": plan.ramp_budget}
        drip.stats(reset=True)
        r = run_streams("ramp", cfg, timeout=plan.ramp_budget + stream_seconds + 60)
        peak = drip.stats()["peak"]
        last = r["levels"][-1] if r["levels"] else {}
        failures = last.get("failed", 0)
        detail = "; ".join(f"{k} x{v}" for k, v in last.get("failures", {}).items())
        note = (f"held {r['held']} at once (levels {', '.join(str(x['level']) for x in r['levels'])}; "
                f"{r['stopped']}); upstream peak {peak} open; {stream_seconds:.1f} s streams started over "
                f"{plan.spread:g} s"
                + (f"; {detail}" if detail else ""))
        row = Row(f"slow streams, {self.workers} workers x {self.threads} threads", errors=failures,
                  rss_mib=worker_rss(gateway.proc.pid), note=note)
        self.report.rows.append(row)
        return row, r["held"]


class RssSampler:
    """The largest worker RSS seen while a block runs (sampled every half second)."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._take()

    def _take(self) -> None:
        rss = worker_rss(self.root_pid)
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()


def run_streams(mode: str, cfg: dict, timeout: float | None = None,
                on_mark: Callable[[str, int], None] | None = None) -> dict:
    """Run ``benchkit.streamclients`` (pinned to the load core) and return its result.

    ``on_mark(name, pid)`` is called as each ``STREAMS_MARK`` line arrives, with the clients' pid, while
    they still run: the moment to read every process's CPU time. Killed after ``timeout`` seconds.
    """
    timeout = timeout or cfg.get("duration", 10) + 60
    cmd = pinned([sys.executable, "-m", "benchkit.streamclients", mode, "--config", json.dumps(cfg)])
    out: list[str] = []
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                                               env=child_env(), cwd=ROOT) as proc:
        timer = threading.Timer(timeout, proc.kill)  # taskset execs python: proc.pid is the clients' pid
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                if line.startswith("STREAMS_MARK ") and on_mark is not None:
                    on_mark(line.split()[1], proc.pid)
            proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        stderr = err.read()
    for line in out:
        if line.startswith("STREAMS_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"stream client failed (exit {proc.returncode}):\n{''.join(out)}\n{stderr[-3000:]}")


def started_in_parallel(starts: list[Callable[[], object]]) -> None:
    with ThreadPoolExecutor(len(starts)) as pool:
        for future in [pool.submit(s) for s in starts]:
            future.result()


def machine_header(args: argparse.Namespace, upstream_kind: str, bench: Bench,
                   peers: list[Peer] | None = None) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    load = os.getloadavg()
    plan = bench.plan
    core = load_core()
    return [
        f"llm-edge-agent benchmark ({'quick' if args.quick else 'full'}) at commit {commit}",
        f"machine: {os.cpu_count()} cores ({cpu}), {mem_kib / 1024 / 1024:.1f} GiB RAM, "
        f"load average before the run {load[0]:.2f}",
        f"upstream: {upstream_kind}; gateway: gunicorn.conf.py, WEB_CONCURRENCY={bench.workers}, "
        f"GUNICORN_THREADS={bench.threads}, metrics on, L1+L2 (redis-server), rate limits on, "
        f"client auth on, JSON logs at info to a file, tracing {'on' if args.tracing else 'off'}"
        + "".join(f", {k}={v}" for k, v in args.env.items()),
        f"load: wrk -t1 -c{plan.connections} for {plan.duration:g} s per row"
        + (f" after {plan.warmup:g} s warm-up" if plan.warmup else "")
        + (f", wrk and upstream pinned to core {core}" if core is not None else ", no pinning (1 core)"),
    ] + [f"peer: {peer.setup}" for peer in peers or []]


GATEWAY_STREAM = "gateway streaming (unique bodies)"
MISS_ROW, L1_ROW = "gateway miss (unique bodies)", "gateway L1 hit (same body)"
PASSTHROUGH_ROW, CONSTANT_ROW = "floor: Falcon + urllib3 passthrough", "floor: Falcon constant"
EMBED_MISS_ROW, EMBED_L1_ROW = "gateway embeddings miss (unique inputs)", "gateway embeddings L1 hit (same input)"
SCALE_RELAYED, SCALE_TRANSLATED = "gateway streams at scale, relayed", "gateway streams at scale, translated"
ROW_KEYS = ("direct", "constant", "passthrough", "miss", "translated", "l1", "l2", "embeddings", "stream", "c1",
            "scale", "slow", "peer")


def run(args: argparse.Namespace) -> Bench:
    bench = Bench(args)
    plan = bench.plan
    wanted = set(args.only or ROW_KEYS)
    # Installed before anything starts: LiteLLM's first install takes a minute or two.
    # The peers run for their own rows (peer) and for their streams-at-scale rows (scale), e.g. --only scale --peers.
    with_peers = bool(wanted & {"peer", "scale"})
    peer_versions = {name: install(name, args.peer_venv) for name in args.peers} if with_peers else {}
    upstream = choose_upstream(args.upstream)
    redis = RedisServer()
    drip = DripServer(plan.drip_interval, words=DRIP_WORDS)
    to_stop: list[Callable[[], None]] = []
    try:
        started_in_parallel([upstream.start, redis.start, drip.start])
        to_stop += [upstream.stop, redis.close, drip.stop]
        config = gw.BenchConfig(drip.url)
        to_stop.append(config.cleanup)
        main = gw.gateway(upstream=upstream, redis_url=redis.url, config=config, workers=bench.workers,
                          threads=bench.threads, tracing=args.tracing, extra=args.env)
        l2_only = gw.gateway(upstream=upstream, redis_url=redis.url, config=config, workers=bench.workers,
                             threads=bench.threads, tracing=args.tracing,
                             extra={"L1_CACHE_SIZE": "0", "CACHE_COALESCING": "false", **args.env})
        keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
        # The c=1 rows measure the floors too: how much of the added latency gunicorn + Falcon cost alone.
        floors = {kind: FloorApp(kind, workers=bench.workers, threads=bench.threads, keepalive=keepalive,
                                 upstream_url=upstream.url) for kind in ("constant", "passthrough")
                  if kind in wanted or "c1" in wanted}
        starts: list[Callable[[], object]] = [main.start]
        to_stop.append(main.stop)
        if "l2" in wanted:
            starts.append(l2_only.start)
            to_stop.append(l2_only.stop)
        for floor in floors.values():
            starts.append(lambda f=floor: f.start().wait())
            to_stop.append(floor.stop)
        peers = [make_peer(name, version, upstream.openai_base_url, workers=bench.workers,
                           litellm_venv=args.peer_venv, slow_base_url=drip.url + "/v1")
                 for name, version in peer_versions.items()]
        for peer in peers:
            starts.append(lambda p=peer: p.start().wait(plan.connections))
            to_stop.append(peer.stop)
        started_in_parallel(starts)

        bench.report.header = machine_header(args, upstream.kind, bench, peers)
        auth = gw.auth_headers()
        fixed = answers.openai_request("What is the capital of France? (cached)")

        # Sanity: every path answers 200 before anything is timed.
        probe(upstream.url + OPENAI_PATH, fixed)
        probe(main.url + OPENAI_PATH, answers.openai_request("probe"), auth)
        probe(main.url + OPENAI_PATH, answers.openai_request("probe", model=answers.ANTHROPIC_MODEL), auth)
        if "embeddings" in wanted:
            probe(main.url + EMBEDDINGS_PATH, answers.embeddings_request("probe"), auth)

        for _ in range(plan.rounds):  # the load rows, in alternating rounds; the median of each is kept
            measure_round(bench, wanted, upstream, main, l2_only, floors, fixed, auth, peers)
        if "l2" in wanted:
            l2_only.stop()  # frees its threads and memory before the slow-stream ramp
        bench.report.keep_medians()
        if "stream" in wanted:
            bench.stream_row(GATEWAY_STREAM, main.port, main.proc.pid, auth, plan.stream_concurrency,
                             profile_as="stream")
        if "scale" in wanted:
            bench.scale_rows(SCALE_RELAYED, main.port, main.proc.pid, auth, drip)
            bench.scale_rows(SCALE_TRANSLATED, main.port, main.proc.pid, auth, drip, path=ANTHROPIC_PATH,
                             build=answers.anthropic_request)
        for peer in peers:
            if not peer.not_streamed:
                if "peer" in wanted:
                    bench.stream_row(f"peer streaming: {peer.label}", peer.port, peer.pid,
                                     peer.request_headers(), plan.stream_concurrency, model=peer.stream_model)
                if "scale" in wanted:
                    bench.scale_rows(f"peer streams at scale: {peer.label}", peer.port, peer.pid,
                                     peer.request_headers(), drip)
            peer.stop()  # its last row: frees its memory (~1 GB for LiteLLM) before the slow-stream ramp
        held = bench.ramp_row(main, drip)[1] if "slow" in wanted else None
        for floor in floors.values():
            floor.stop()
        add_targets(bench, held, peers)
        return bench
    finally:
        for stop in reversed(to_stop):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"bench: stopping failed: {exc}", file=sys.stderr)


def measure_round(bench: Bench, wanted: set[str], upstream: LocalUpstream, main: GatewayProcess,
                  l2_only: GatewayProcess, floors: dict[str, FloorApp], fixed: bytes, auth: dict[str, str],
                  peers: list[Peer]) -> None:
    """One round of the load rows: each floor right before the gateway rows compared with it."""
    plan = bench.plan
    openai_tpl = answers.template(answers.openai_request)
    upstream_pid = upstream.proc.pid
    if "direct" in wanted:
        bench.wrk_row("direct upstream (no gateway)", upstream.url, OPENAI_PATH, upstream_pid, body=fixed,
                      note=f"{upstream.kind}, fixed body")
    if "passthrough" in wanted:
        bench.wrk_row(PASSTHROUGH_ROW, floors["passthrough"].url, OPENAI_PATH,
                      floors["passthrough"].pid, template=openai_tpl, note="minimal app, same gunicorn settings")
    if "miss" in wanted:
        bench.wrk_row(MISS_ROW, main.url, OPENAI_PATH, main.proc.pid, template=openai_tpl,
                      headers=auth, metrics_url=main.metrics_url, note="OpenAI in and out", profile_as="miss")
    if "translated" in wanted:
        bench.wrk_row("gateway miss, translated", main.url, OPENAI_PATH, main.proc.pid,
                      template=answers.template(answers.openai_request, model=answers.ANTHROPIC_MODEL),
                      headers=auth, metrics_url=main.metrics_url, note="OpenAI in, Anthropic upstream",
                      profile_as="translated")
    if "constant" in wanted:
        bench.wrk_row(CONSTANT_ROW, floors["constant"].url, OPENAI_PATH, floors["constant"].pid,
                      body=fixed, note="minimal app, same gunicorn settings")
    if "l1" in wanted:
        warm_l1(main, fixed, auth, plan.connections)
        bench.wrk_row(L1_ROW, main.url, OPENAI_PATH, main.proc.pid, body=fixed,
                      headers=auth, metrics_url=main.metrics_url, profile_as="l1")
    if "l2" in wanted:
        probe(l2_only.url + OPENAI_PATH, fixed, auth)
        bench.wrk_row("gateway L2 hit (L1_CACHE_SIZE=0)", l2_only.url, OPENAI_PATH, l2_only.proc.pid,
                      body=fixed, headers=auth, metrics_url=l2_only.metrics_url, profile_as="l2")
    if "embeddings" in wanted:
        one_vector = f"one {answers.EMBEDDING_DIMENSIONS}-float vector in base64 per answer"
        bench.wrk_row(EMBED_MISS_ROW, main.url, EMBEDDINGS_PATH, main.proc.pid,
                      template=answers.template(answers.embeddings_request), headers=auth,
                      metrics_url=main.metrics_url, note=one_vector, profile_as="embeddings")
        same = answers.embeddings_request("What is the capital of France? (cached)")
        warm_l1(main, same, auth, plan.connections, EMBEDDINGS_PATH)
        bench.wrk_row(EMBED_L1_ROW, main.url, EMBEDDINGS_PATH, main.proc.pid, body=same, headers=auth,
                      metrics_url=main.metrics_url, note=one_vector)
    if "c1" in wanted:
        warm_l1(main, fixed, auth, plan.connections)
        bench.wrk_row("c=1 direct upstream", upstream.url, OPENAI_PATH, upstream_pid, body=fixed, connections=1)
        bench.wrk_row("c=1 gateway miss", main.url, OPENAI_PATH, main.proc.pid, template=openai_tpl,
                      headers=auth, connections=1, metrics_url=main.metrics_url)
        bench.wrk_row("c=1 gateway L1 hit", main.url, OPENAI_PATH, main.proc.pid, body=fixed, headers=auth,
                      connections=1, metrics_url=main.metrics_url)
        bench.wrk_row("c=1 floor: Falcon constant", floors["constant"].url, OPENAI_PATH,
                      floors["constant"].pid, body=fixed, connections=1)
        bench.wrk_row("c=1 floor: Falcon + urllib3 passthrough", floors["passthrough"].url, OPENAI_PATH,
                      floors["passthrough"].pid, template=openai_tpl, connections=1)
    for peer in peers if "peer" in wanted else []:  # the same load as the gateway's miss rows, same upstream
        bench.wrk_row(f"peer: {peer.label}, unique bodies", peer.url, OPENAI_PATH, peer.pid, template=openai_tpl,
                      headers=peer.request_headers(), note="OpenAI in and out, no cache")
        bench.wrk_row(f"c=1 peer: {peer.label}", peer.url, OPENAI_PATH, peer.pid, template=openai_tpl,
                      headers=peer.request_headers(), connections=1)


def add_targets(bench: Bench, held: int | None, peers: list[Peer] | None = None) -> None:
    r = bench.report
    miss = r.row(MISS_ROW)
    direct1, miss1, hit1 = r.row("c=1 direct upstream"), r.row("c=1 gateway miss"), r.row("c=1 gateway L1 hit")
    constant1, passthrough1 = r.row("c=1 floor: Falcon constant"), r.row("c=1 floor: Falcon + urllib3 passthrough")

    def beyond(row: Row | None, base: Row | None) -> float | None:
        """``row``'s p50 minus ``base``'s, when both were measured."""
        return row.p50 - base.p50 if row and base and row.p50 is not None and base.p50 is not None else None

    def added(row: Row | None) -> float | None:
        return beyond(row, direct1)

    gateway_rss = [row.rss_mib for row in r.rows if row.name.startswith(("gateway", "c=1 gateway", "slow"))
                   and row.rss_mib is not None]
    if direct1:
        r.lines = [f"added latency at c=1 (p50 through the gateway minus p50 direct, {direct1.p50:.3f} ms): "
                   f"miss {_ms(added(miss1))}, L1 hit {_ms(added(hit1))}; the floors alone add "
                   f"{_ms(added(passthrough1))} (passthrough) and {_ms(added(constant1))} (constant)"]
        # The floors' own latency moves with the VM's speed; what the gateway adds beyond them moves less.
        r.lines.append("the gateway's own share at c=1 (its p50 minus its floor's): "
                       f"miss {_ms(beyond(miss1, passthrough1))}, L1 hit {_ms(beyond(hit1, constant1))}")
    for peer in peers or []:
        peer_miss, peer1 = r.row(f"peer: {peer.label}, unique bodies"), r.row(f"c=1 peer: {peer.label}")
        if miss and peer_miss and miss.rps and peer_miss.rps:
            line = (f"side by side with {peer.label} (same upstream, same load, unique bodies): the gateway "
                    f"{miss.rps:,.0f} req/s, the peer {peer_miss.rps:,.0f} ({miss.rps / peer_miss.rps:.1f}x)")
            if miss.cpu_us and peer_miss.cpu_us:
                line += f", CPU per request {miss.cpu_us:,.0f} against {peer_miss.cpu_us:,.0f} us"
            line += f"; added p50 at c=1: the gateway {_ms(added(miss1))}, the peer {_ms(added(peer1))}"
            if miss1 and peer1 and miss1.p99 is not None and peer1.p99 is not None:
                line += f"; p99 at c=1: {miss1.p99:.2f} against {peer1.p99:.2f} ms"
            r.lines.append(line)
        peer_ttft, ttft = bench.ttft_p50.get(f"peer streaming: {peer.label}"), bench.ttft_p50.get(GATEWAY_STREAM)
        if peer_ttft is not None and ttft is not None:
            r.lines.append(f"streams at c={bench.plan.stream_concurrency}, time to first token p50: the gateway "
                           f"{ttft:.2f} ms, {peer.label} {peer_ttft:.2f} ms")
        elif peer.not_streamed:
            r.lines.append(f"{peer.label}: streams not measured: {peer.not_streamed}")
    for name, splits in bench.scale_cpu.items():
        line = cpu_summary(name, splits, load_cores=1 if load_core() is not None else machine_cores())
        if line:
            r.lines.append(line)
    scale = scale_summary(r, SCALE_RELAYED)
    for peer in peers or []:
        theirs = scale_summary(r, f"peer streams at scale: {peer.label}")
        if scale[1] and theirs[1]:
            r.lines.append(f"streams at scale side by side with {peer.label} (same drip upstream, same clients): "
                           f"the gateway's best {scale[1]:,.0f} streams/s, the peer's {theirs[1]:,.0f} "
                           f"({scale[1] / theirs[1]:.1f}x)")
    miss_ratio, miss_rounds = r.paired_ratio(MISS_ROW, PASSTHROUGH_ROW)
    hit_ratio, hit_rounds = r.paired_ratio(L1_ROW, CONSTANT_ROW)
    if miss_rounds or hit_rounds:
        r.lines.append("the ratios, round by round (each round measures the floor just before the gateway; the "
                       f"targets take the median): miss {_percents(miss_rounds)}, L1 hit {_percents(hit_rounds)}")
    if bench.args.quick:
        r.lines.append(f"--quick: 1-second loads and at most {bench.args.stream_cap} slow streams check that every "
                       "path works; the verdicts below mean something only for a full run")
    r.targets = [
        Target("miss path req/s vs passthrough floor", miss_ratio, 85, "%", True),
        Target("L1 hit req/s vs constant floor", hit_ratio, 85, "%", True),
        Target("added p50 at c=1, miss", added(miss1), 1.0, "ms", False),
        Target("added p50 at c=1, L1 hit", added(hit1), 0.4, "ms", False),
        Target("RSS per gateway worker after load (max)", max(gateway_rss, default=None), 100, "MiB", False),
        Target(f"concurrent slow streams per {bench.workers}-worker node", None if held is None else float(held),
               1000, "", True),
        Target(f"open streams per {bench.workers}-worker node, relayed, 0 failures, stretch p99 <= 100 ms",
               scale[0], 3000, "", True),
        Target("streams/s at saturation, relayed", scale[1], 800, "", True),
    ]


def scale_summary(report: Report, name: str) -> tuple[float | None, float | None]:
    """The rows of one streams-at-scale set: the highest level held clean (no failure, stretch p99 <= 100 ms)
    and the most streams/s of any level; ``None`` when not measured."""
    rows = [row for row in report.rows if row.name.startswith(name + ", ")]
    if not rows:
        return None, None
    clean = [int(row.name.rsplit(", ", 1)[1].split()[0]) for row in rows
             if row.errors == 0 and row.rps and row.p99 is not None and row.p99 <= 100]
    return float(max(clean, default=0)), max((row.rps or 0.0 for row in rows), default=None)


def _percents(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}%" for v in values) or "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every row with tiny durations (a smoke run)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per row (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the load rows this many times, alternating, and keep each row's median "
                             "(default 1; the README's figures use 3)")
    parser.add_argument("--stream-concurrency", type=int, default=16, help="streaming clients (default 16)")
    parser.add_argument("--stream-cap", type=int, default=1200, help="slow-stream ramp stops here (default 1200)")
    parser.add_argument("--scale-levels", default="500,1000,2000,3000",
                        help="open streams of the streams-at-scale rows, comma-separated (default %(default)s; "
                             "--quick: 20)")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: the shipped default)")
    parser.add_argument("--threads", type=int, help="GUNICORN_THREADS (default: the shipped default)")
    parser.add_argument("--upstream", choices=["auto", "nginx", "emulator"], default="auto",
                        help="fast upstream: nginx when installed (auto), else the emulator")
    parser.add_argument("--tracing", action="store_true", help="turn tracing on (no collector runs here)")
    parser.add_argument("--profile", default="",
                        help="py-spy the workers during rows: miss,translated,l1,l2,embeddings,stream")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra gateway environment, repeatable (e.g. LOG_LEVEL=warning to price the access log)")
    parser.add_argument("--peers", default="", help="also measure peer gateways side by side, comma-separated: "
                        "litellm (LiteLLM proxy), portkey (Portkey's AI gateway, Node); each installed into "
                        ".venv-peers/ when missing")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_VENV,
                        help="the virtual environment holding LiteLLM (default: %(default)s)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="after the run, draw streams/s and stretch p99 against open streams of every "
                             "streams-at-scale set (the gateway's and each peer's) into this PNG (matplotlib)")
    parser.add_argument("--only", default="", help=f"measure only these rows (for profiling): {','.join(ROW_KEYS)}")
    args = parser.parse_args(argv)
    args.profile = [p for p in args.profile.split(",") if p]
    args.only = [p for p in args.only.split(",") if p]
    args.peers = list(dict.fromkeys(p for p in args.peers.split(",") if p))
    if set(args.peers) - set(PEER_NAMES):
        parser.error(f"--peers: unknown peers {', '.join(sorted(set(args.peers) - set(PEER_NAMES)))} "
                     f"(known: {', '.join(PEER_NAMES)})")
    try:
        args.env = dict(item.split("=", 1) for item in args.env)
    except ValueError:
        parser.error("--env takes NAME=VALUE")
    unknown = set(args.only) - set(ROW_KEYS)
    if unknown:
        parser.error(f"--only: unknown rows {', '.join(sorted(unknown))}")
    if "peer" in args.only and not args.peers:
        parser.error(f"--only peer needs --peers ({','.join(PEER_NAMES)})")
    if args.quick:
        args.stream_cap = min(args.stream_cap, 20)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk.available():
        print("bench: wrk is not installed (scripts/bench installs it: apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    bench = run(args)
    print(bench.report.render())
    for text in bench.profiles:
        print("\n" + text)
    if args.plot:
        title = bench.report.header[0] if bench.report.header else ""
        if plot.write(bench.report, args.plot, title=title):
            print(f"\nplot: {args.plot}")
        else:
            print("\nplot: not drawn, no streams-at-scale rows (--only scale, or a run with them)")
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

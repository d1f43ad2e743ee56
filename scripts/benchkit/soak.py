"""The soak: minutes of mixed load on the gateway as production runs it, one table row per minute.

    cd scripts && PYTHONPATH=.:.. ../.venv/bin/python -m benchkit.soak --minutes 30     (or scripts/soak --minutes 30)

Starts what the benchmark starts (benchkit.gateway): a private redis-server,
the fast upstream (nginx, else the emulator) for JSON and streamed answers,
the slow drip server for streams cut by their client, and the gateway under
gunicorn with 2 workers and shipped settings otherwise. Then, from asyncio
tasks in this process on 127.0.0.1, for ``--minutes`` (fractions too):

- hits: one fixed body, again and again (L1); misses: unique bodies, OpenAI
  and Anthropic endpoints; streams: unique bodies, both endpoints;
- disconnects: slow streams the client drops after the first event (half
  close, half reset); idle: keep-alive connections that send one request,
  wait, and send another on the same connection;
- slow clients: a request body dribbled in pieces, a stream read slowly;
- bad requests: broken JSON, no key, an unknown path, each with its 4xx.

Each row: requests by kind, failures (an unexpected status, a 5xx, a broken
stream, a timeout, a connection error), p50/p99 of the hits and misses, and
the workers' RSS (sum and max, from /proc). At the end: RSS growth from the
first row to the last, worker restarts (their pids changed), upstream streams
still open after the disconnects, total failures. Exits 1 on any failure or
restart. Every loop ends by itself: no new request after the deadline, and
each request has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.config.settings import Settings
from benchkit import answers
from benchkit import gateway as gw
from benchkit.gateway import OPENAI_PATH
from benchkit.procs import RedisServer, family, rss_mib, wait_until
from benchkit.streamclients import _END, _ERROR, _body_parts, _percentile, _read_head, http_request
from benchkit.upstream import DripServer, choose_upstream

HOST = "127.0.0.1"
ANTHROPIC_PATH = "/v1/messages"
REQUEST_TIMEOUT = 30.0  # seconds for any one exchange, dribbled body or slow read included
DRIP_INTERVAL = 0.2  # the slow upstream's pause between events: a stream lasts about 2.6 s
KINDS = ("hit", "miss", "stream", "disconnect", "idle", "slow", "bad")
NORMAL = ("hit", "miss")  # the kinds whose latency the table shows


class Unexpected(Exception):
    """An answer that is not the one this kind of request must get; ``category`` names the failure's kind."""

    def __init__(self, category: str, text: str) -> None:
        super().__init__(text)
        self.category = category


@dataclass
class Tally:
    """What happened in one row's time."""

    requests: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # by category
    latencies_ms: list[float] = field(default_factory=list)


class Conn:
    """One keep-alive connection to the gateway, opened on first use and again after an error or a close."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, path: str, body: bytes, headers: dict[str, str], *, dribble: float = 0.0,
                       read_pause: float = 0.0) -> tuple[int, bytes]:
        """Send one POST and read its whole answer: the status and the body (de-chunked).

        ``dribble``: send the body in 8 pieces over that many seconds; ``read_pause``: sleep that long
        after each piece of the answer (a slow reader)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        try:
            request = http_request(HOST, self.port, path, body, headers)
            if dribble:
                head_end = request.index(b"\r\n\r\n") + 4
                step = -(-len(body) // 8)
                pieces = [request[:head_end]] + [request[i:i + step] for i in range(head_end, len(request), step)]
                for piece in pieces:
                    self.writer.write(piece)
                    await self.writer.drain()
                    await asyncio.sleep(dribble / len(pieces))
            else:
                self.writer.write(request)
                await self.writer.drain()
            status, answer_headers = await _read_head(self.reader)
            parts = []
            async for part in _body_parts(self.reader, answer_headers):
                parts.append(part)
                if read_pause:
                    await asyncio.sleep(read_pause)
        except BaseException:
            self.close()
            raise
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return status, b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def expect(status: int, wanted: int) -> None:
    if status != wanted:
        raise Unexpected("5xx" if status >= 500 else "unexpected status", f"status {status}, not {wanted}")


def check_stream(status: int, data: bytes) -> None:
    expect(status, 200)
    if any(marker in data for marker in _ERROR):
        raise Unexpected("broken stream", "an error event")
    if not any(marker in data for marker in _END):
        raise Unexpected("broken stream", "no last event")


class Soak:
    def __init__(self, port: int, *, seconds: float, idle_seconds: float, idle_connections: int,
                 pause: float) -> None:
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.idle_seconds = idle_seconds
        self.idle_connections = idle_connections
        self.pause = pause
        self.tally = Tally()
        self.samples: list[str] = []  # the first few failures, in words
        self.nonce = uuid.uuid4().hex[:10]
        self.counter = itertools.count()
        self.auth = gw.auth_headers()

    def prompt(self, what: str) -> str:
        return f"soak {what} {self.nonce}-{next(self.counter)}"

    async def attempt(self, kind: str, op: Callable[[], Awaitable[None]]) -> None:
        """Run one request of ``kind``, bounded by REQUEST_TIMEOUT, and count it: done, or failed and why."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(op(), REQUEST_TIMEOUT)
        except Exception as exc:
            if isinstance(exc, Unexpected):
                category, text = exc.category, str(exc)
            elif isinstance(exc, TimeoutError):
                category, text = "timeout", f"no answer within {REQUEST_TIMEOUT:g} s"
            else:
                category, text = "connection", f"{type(exc).__name__}: {exc}"
            self.tally.failures[category] += 1
            if len(self.samples) < 10:
                self.samples.append(f"{kind}: {text}")
        else:
            if kind in NORMAL:
                self.tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.tally.requests[kind] += 1

    async def loop(self, kind: str, step: Callable[[int], Awaitable[None]], slower: float = 1) -> None:
        """``step`` again and again until the deadline, ``pause`` (times ``slower``) apart."""
        for i in itertools.count():
            if time.monotonic() >= self.deadline:
                return
            await self.attempt(kind, lambda i=i: step(i))
            await asyncio.sleep(self.pause * slower)

    # --- the kinds of request -------------------------------------------------------------------

    def hits(self) -> Callable[[int], Awaitable[None]]:
        conn, body = Conn(self.port), answers.openai_request("What is the capital of France? (soak)")

        async def step(_: int) -> None:
            expect((await conn.exchange(OPENAI_PATH, body, self.auth))[0], 200)
        return step

    def misses(self) -> Callable[[int], Awaitable[None]]:
        conn = Conn(self.port)

        async def step(i: int) -> None:
            path, body = (OPENAI_PATH, answers.openai_request(self.prompt("miss"))) if i % 2 else \
                (ANTHROPIC_PATH, answers.anthropic_request(self.prompt("miss")))
            expect((await conn.exchange(path, body, self.auth))[0], 200)
        return step

    def streams(self, read_pause: float = 0.0) -> Callable[[int], Awaitable[None]]:
        conn = Conn(self.port)

        async def step(i: int) -> None:
            path, body = (OPENAI_PATH, answers.openai_request(self.prompt("stream"), stream=True)) if i % 2 else \
                (ANTHROPIC_PATH, answers.anthropic_request(self.prompt("stream"), stream=True))
            check_stream(*await conn.exchange(path, body, self.auth, read_pause=read_pause))
        return step

    def slow_bodies(self) -> Callable[[int], Awaitable[None]]:
        conn = Conn(self.port)

        async def step(_: int) -> None:
            body = answers.openai_request(self.prompt("dribbled"))
            expect((await conn.exchange(OPENAI_PATH, body, self.auth, dribble=1.0))[0], 200)
        return step

    async def disconnect(self, i: int) -> None:
        """A slow stream dropped after its first event: closed half the time, reset the other half."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            body = answers.openai_request(self.prompt("dropped"), model=answers.SLOW_MODEL, stream=True)
            writer.write(http_request(HOST, self.port, OPENAI_PATH, body, self.auth))
            await writer.drain()
            status, _ = await _read_head(reader)
            expect(status, 200)
            await reader.readuntil(b"\n\n")
        finally:
            if i % 2:
                writer.transport.abort()
            else:
                writer.close()

    def bad(self) -> Callable[[int], Awaitable[None]]:
        conn = Conn(self.port)
        cases = [(OPENAI_PATH, b'{"model": "gpt-4o-mini", "messages": [', self.auth, 400),
                 (OPENAI_PATH, answers.openai_request("no key"), {}, 401),
                 ("/v1/no-such-endpoint", answers.openai_request("where"), self.auth, 404)]

        async def step(i: int) -> None:
            path, body, headers, status = cases[i % len(cases)]
            expect((await conn.exchange(path, body, headers))[0], status)
        return step

    async def idle(self, n: int) -> None:
        """A keep-alive connection that waits ``idle_seconds`` between requests (less than the keep-alive)."""
        conn, body = Conn(self.port), answers.openai_request(f"idle {n}")
        await asyncio.sleep(n * 0.05)
        while True:
            await self.attempt("idle", lambda: self.idle_step(conn, body))
            left = self.deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(self.idle_seconds, left))  # the last wait ends at the deadline

    async def idle_step(self, conn: Conn, body: bytes) -> None:
        expect((await conn.exchange(OPENAI_PATH, body, self.auth))[0], 200)

    async def run(self) -> None:
        tasks = [self.loop("hit", self.hits()), self.loop("hit", self.hits()),
                 self.loop("miss", self.misses()), self.loop("miss", self.misses()),
                 self.loop("stream", self.streams()), self.loop("slow", self.streams(read_pause=0.05)),
                 self.loop("slow", self.slow_bodies()), self.loop("disconnect", self.disconnect, slower=10),
                 self.loop("bad", self.bad(), slower=20), *(self.idle(n) for n in range(self.idle_connections))]
        await asyncio.gather(*tasks)


# --- the table ----------------------------------------------------------------------------------

COLUMNS = ("minute", *KINDS, "failures", "p50 ms", "p99 ms", "RSS sum MiB", "RSS max MiB", "workers")
WIDTHS = (6, 6, 6, 6, 10, 4, 4, 4, 8, 7, 7, 11, 11, 7)


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, WIDTHS, strict=True)) + " |"


@dataclass
class Minute:
    end_minute: float
    rss_sum: float
    rss_max: float
    pids: tuple[int, ...]
    failures: Counter[str]


def sample_row(master_pid: int, end_seconds: float, tally: Tally) -> tuple[Minute, str]:
    pids = tuple(family(master_pid)[1:])
    rss = [rss_mib(p) for p in pids]
    minute = Minute(end_seconds / 60, sum(rss), max(rss, default=0.0), pids, tally.failures)
    lat = tally.latencies_ms
    cells = [f"{minute.end_minute:.2f}".rstrip("0").rstrip("."), *(str(tally.requests[k]) for k in KINDS),
             str(minute.failures.total()), f"{_percentile(lat, 50):.1f}" if lat else "-",
             f"{_percentile(lat, 99):.1f}" if lat else "-", f"{minute.rss_sum:.1f}", f"{minute.rss_max:.1f}",
             str(len(pids))]
    return minute, table_line(cells)


async def soak_with_rows(soak: Soak, master_pid: int, seconds: float, row_seconds: float) -> list[Minute]:
    """Run the load, printing a row at each ``row_seconds`` and a last one when every loop has ended."""
    rows: list[Minute] = []
    started = time.monotonic()

    def print_row(end: float) -> None:
        tally, soak.tally = soak.tally, Tally()
        minute, line = sample_row(master_pid, end, tally)
        rows.append(minute)
        print(line, flush=True)

    async def rows_on_time() -> None:
        for end in itertools.takewhile(lambda e: e < seconds - 1e-6, itertools.count(row_seconds, row_seconds)):
            await asyncio.sleep(max(0.0, started + end - time.monotonic()))
            print_row(end)

    ticker = asyncio.create_task(rows_on_time())
    await soak.run()
    ticker.cancel()
    print_row(seconds)
    return rows


def log_trouble(log: str) -> tuple[int, list[str]]:
    """How many lines of the gateway's log are errors (level error or critical, or a traceback), and a few."""
    bad = [line for line in log.splitlines()
           if '"level":"error"' in line or '"level":"critical"' in line or line.startswith("Traceback")]
    return len(bad), [line[:300] for line in bad[:3]]


def summary(rows: list[Minute], leftover_streams: int, samples: list[str], log: str) -> tuple[list[str], bool]:
    first, last = rows[0], rows[-1]
    log_errors, log_samples = log_trouble(log)
    restarted = sorted(set(itertools.chain.from_iterable(r.pids for r in rows)) - set(first.pids))
    failures = sum((r.failures for r in rows), Counter())
    lines = [
        f"RSS growth first -> last row: sum {last.rss_sum - first.rss_sum:+.1f} MiB "
        f"({first.rss_sum:.1f} -> {last.rss_sum:.1f}), max {last.rss_max - first.rss_max:+.1f} MiB "
        f"({first.rss_max:.1f} -> {last.rss_max:.1f})",
        f"worker restarts: {len(restarted)} (first workers {', '.join(map(str, first.pids))}"
        + (f"; new: {', '.join(map(str, restarted))})" if restarted else ")"),
        f"upstream streams still open after the disconnects: {leftover_streams}",
        f"error lines in the gateway's log: {log_errors}",
        *(f"  e.g. {line}" for line in log_samples),
        f"failures: {failures.total()}" + "".join(f", {kind} {n}" for kind, n in failures.most_common()),
        *(f"  e.g. {s}" for s in samples),
    ]
    ok = not failures and not restarted and len(first.pids) > 0 and leftover_streams == 0 and log_errors == 0
    return lines, ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="how long the load runs (fractions too; default 10)")
    parser.add_argument("--row-seconds", type=float, default=60, help="seconds per table row (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY (default 2)")
    parser.add_argument("--idle-connections", type=int, default=8, help="idle keep-alive connections (default 8)")
    parser.add_argument("--idle-seconds", type=float, default=20,
                        help="how long an idle connection waits between requests (default 20)")
    parser.add_argument("--pause", type=float, default=0.01,
                        help="seconds each client waits between its requests (default 0.01)")
    parser.add_argument("--upstream", choices=["auto", "nginx", "emulator"], default="auto",
                        help="fast upstream: nginx when installed (auto), else the emulator")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.row_seconds <= 0:
        parser.error("--minutes and --row-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.minutes * 60
    upstream, redis, drip = choose_upstream(args.upstream), RedisServer(), DripServer(DRIP_INTERVAL)
    with contextlib.ExitStack() as stack:  # stops, in reverse order, whatever was started
        for server, stop in ((upstream, upstream.stop), (redis, redis.close), (drip, drip.stop)):
            stack.callback(stop)
            server.start()
        config = gw.BenchConfig(drip.url)
        stack.callback(config.cleanup)
        gateway = gw.gateway(upstream=upstream, redis_url=redis.url, config=config, workers=args.workers,
                             threads=Settings().gunicorn_threads)
        stack.callback(gateway.stop)
        gateway.start()
        print(f"soak: {args.minutes:g} min, a row every {args.row_seconds:g} s; upstream {upstream.kind}; gateway "
              f"{args.workers} workers x {Settings().gunicorn_threads} threads, L1+L2, limits, auth "
              f"(log {gateway.log_path})", flush=True)
        print(table_line(list(COLUMNS)) + "\n" + "|" + "|".join("-" * (w + 2) for w in WIDTHS) + "|", flush=True)
        soak = Soak(gateway.port, seconds=seconds, idle_seconds=args.idle_seconds,
                    idle_connections=args.idle_connections, pause=args.pause)
        rows = asyncio.run(soak_with_rows(soak, gateway.proc.pid, seconds, args.row_seconds))
        with contextlib.suppress(TimeoutError):  # the gateway closes a dropped stream's upstream at its next event
            wait_until(lambda: drip.stats()["open"] == 0, timeout=DRIP_INTERVAL * 20 + 5, what="drip streams")
        lines, ok = summary(rows, drip.stats()["open"], soak.samples, gateway.logs())
        print("\n" + "\n".join(lines) + f"\n{'soak passed' if ok else 'soak FAILED'}", flush=True)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

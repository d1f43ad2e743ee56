"""Streaming clients (asyncio, one thread): what wrk cannot measure.

``latency``: a fixed number of keep-alive connections, each sending streamed
requests back to back for a fixed time; reports time to first token (the
first text delta) and total time per stream.

``ramp``: opens N slow streams, for growing N, and counts the ones that fail:
not 200, an error event, no end of stream, or a first byte later than
``first_byte_limit`` (a stream queued behind busy threads is a failure to
hold it). The N streams start spread evenly over ``spread`` seconds, shorter
than one stream lasts, so all N are open together (the drip upstream's peak
shows it) without turning the test into a connection-burst test. Stops at
the first level with a failure or at the cap.

``sustain``: ``level`` connections, each sending slow streamed requests back
to back for a fixed time (real LLM traffic: many long streams at once, each
client asking again as soon as its answer ends). Reports the streams finished
per second and the *stretch* of each, its total time minus the time the
upstream itself takes to send it: what the gateway added to a stream. The
connections start spread over one stream's time, so they do not all ask at
the same instant; only streams started after that are counted. It prints
``STREAMS_MARK open`` and ``STREAMS_MARK close`` when the counted window opens
and closes, so the bench can read every process's CPU time over exactly that
window (the CPU split of docs/performance.md).

All print one JSON line starting with ``STREAMS_RESULT`` and end by
themselves within their time limits.
Run: ``python -m benchkit.streamclients latency|ramp|sustain ...`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field

_FIRST_TEXT = re.compile(rb'"content":"[^"]|"text_delta"')
_END = (b"data: [DONE]", b"event: message_stop")
_ERROR = (b'{"error"', b"event: error")


class StreamFailed(Exception):
    pass


@dataclass
class StreamTiming:
    first_byte: float
    first_token: float
    total: float


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    return status, headers


async def _body_parts(reader: asyncio.StreamReader, headers: dict[str, str]):
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


async def one_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes,
                     first_byte_limit: float | None = None) -> StreamTiming:
    """Send one streamed request on an open connection and read its answer to the end."""
    started = time.perf_counter()
    writer.write(request)
    await writer.drain()
    head = _read_head(reader)
    status, headers = await (asyncio.wait_for(head, first_byte_limit) if first_byte_limit else head)
    first_byte = time.perf_counter() - started
    if status != 200:
        raise StreamFailed(f"status {status}")
    first_token = None
    seen = b""
    async for part in _body_parts(reader, headers):
        seen = seen[-64:] + part  # markers may straddle two chunks
        if first_token is None and _FIRST_TEXT.search(seen):
            first_token = time.perf_counter() - started
        if any(marker in seen for marker in _ERROR):
            raise StreamFailed("error event")
    if not any(marker in seen for marker in _END):
        raise StreamFailed("stream ended without its last event")
    total = time.perf_counter() - started
    return StreamTiming(first_byte, first_token if first_token is not None else total, total)


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LatencyConfig:
    host: str
    port: int
    path: str
    head: str
    tail: str
    headers: dict[str, str]
    concurrency: int
    duration: float


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def latency(cfg: LatencyConfig) -> dict:
    deadline = time.monotonic() + cfg.duration
    nonce = uuid.uuid4().hex[:12]
    timings: list[StreamTiming] = []
    errors: list[str] = []
    counter = 0

    async def worker(n: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        try:
            while time.monotonic() < deadline:
                counter += 1
                body = f"{cfg.head}streamed prompt {nonce}-{n}-{counter}{cfg.tail}".encode()
                try:
                    timings.append(await asyncio.wait_for(
                        one_stream(reader, writer, http_request(cfg.host, cfg.port, cfg.path, body, cfg.headers)),
                        timeout=max(5.0, cfg.duration)))
                except (TimeoutError, StreamFailed, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(type(exc).__name__ + ": " + str(exc))
                    writer.close()
                    reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(cfg.concurrency)))
    elapsed = time.monotonic() - started
    ttft = [t.first_token * 1000 for t in timings]
    total = [t.total * 1000 for t in timings]
    return {"requests": len(timings), "seconds": elapsed, "errors": len(errors), "error_sample": errors[:3],
            "ttft_p50": _percentile(ttft, 50), "ttft_p99": _percentile(ttft, 99),
            "p50": _percentile(total, 50), "p90": _percentile(total, 90), "p99": _percentile(total, 99)}


@dataclass
class RampConfig:
    host: str
    port: int
    path: str
    head: str  # the body around its prompt: every stream asks something else (no cache hits, no coalescing)
    tail: str
    headers: dict[str, str]
    levels: list[int]
    spread: float
    first_byte_limit: float
    stream_timeout: float
    time_budget: float  # no new level starts after this many seconds
    results: list[dict] = field(default_factory=list)


async def _hold(cfg: RampConfig, request: bytes, delay: float) -> StreamTiming:
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
    try:
        return await asyncio.wait_for(one_stream(reader, writer, request, cfg.first_byte_limit),
                                      cfg.stream_timeout)
    finally:
        writer.close()


async def ramp(cfg: RampConfig) -> dict:
    nonce = uuid.uuid4().hex[:12]

    def request(level: int, i: int) -> bytes:
        body = f"{cfg.head}hold stream {nonce}-{level}-{i}{cfg.tail}".encode()
        return http_request(cfg.host, cfg.port, cfg.path, body, cfg.headers)
    held = 0
    budget_end = time.monotonic() + cfg.time_budget
    stopped = "cap reached"
    for level in cfg.levels:
        if time.monotonic() > budget_end:  # a level is bounded by stream_timeout: all ends in budget + that
            stopped = "time budget spent"
            break
        started = time.monotonic()
        outcomes = await asyncio.gather(*(_hold(cfg, request(level, i), cfg.spread * i / level) for i in range(level)),
                                        return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        kinds: dict[str, int] = {}
        for f in failures:
            kind = type(f).__name__ + (f": {f}" if isinstance(f, StreamFailed) else "")
            kinds[kind] = kinds.get(kind, 0) + 1
        ok = [o for o in outcomes if isinstance(o, StreamTiming)]
        cfg.results.append({"level": level, "ok": len(ok), "failed": len(failures), "failures": kinds,
                            "first_byte_max_ms": round(max((o.first_byte for o in ok), default=0) * 1000, 1),
                            "seconds": round(time.monotonic() - started, 2)})
        if failures:
            stopped = f"failures at {level}"
            break
        held = level
    return {"held": held, "stopped": stopped, "levels": cfg.results}


@dataclass
class SustainConfig:
    host: str
    port: int
    path: str
    head: str
    tail: str
    headers: dict[str, str]
    level: int  # open streams: connections asking back to back
    duration: float  # seconds counted, after the spread
    stream_seconds: float  # what the upstream takes to send one answer
    stream_timeout: float


def _failure(exc: BaseException) -> str:
    return type(exc).__name__ + (f": {exc}" if isinstance(exc, StreamFailed) else "")


async def sustain(cfg: SustainConfig) -> dict:
    """``level`` clients asking back to back. The stretch (and the time to the first byte) is of the streams
    started in the counted window (each waited for to its end, however late); streams/s counts those that
    ended in the window."""
    nonce = uuid.uuid4().hex[:12]
    spread = cfg.stream_seconds
    counted_from = time.monotonic() + spread
    counted_to = counted_from + cfg.duration
    stretch: list[float] = []
    first_bytes: list[float] = []
    ended_in_window = 0
    failures: dict[str, int] = {}

    async def client(n: int) -> None:
        nonlocal ended_in_window
        await asyncio.sleep(spread * n / cfg.level)
        reader = writer = None
        asked = 0
        while (started := time.monotonic()) < counted_to:
            asked += 1
            counted = started >= counted_from
            body = f"{cfg.head}sustained {nonce}-{n}-{asked}{cfg.tail}".encode()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
                timing = await asyncio.wait_for(
                    one_stream(reader, writer, http_request(cfg.host, cfg.port, cfg.path, body, cfg.headers)),
                    cfg.stream_timeout)
            except (TimeoutError, StreamFailed, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if counted:
                    kind = _failure(exc)
                    failures[kind] = failures.get(kind, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.1)  # a refused connection is not retried in a tight loop
                continue
            if counted:
                stretch.append((timing.total - cfg.stream_seconds) * 1000)
                first_bytes.append(timing.first_byte * 1000)
            if counted_from <= started + timing.total <= counted_to:
                ended_in_window += 1
        if writer is not None:
            writer.close()

    async def marks() -> None:
        for name, at in (("open", counted_from), ("close", counted_to)):
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            print(f"STREAMS_MARK {name}", flush=True)

    await asyncio.gather(marks(), *(client(n) for n in range(cfg.level)))
    return {"level": cfg.level, "streams": len(stretch), "ended": ended_in_window,
            "streams_per_s": ended_in_window / cfg.duration,
            "stretch_p50": _percentile(stretch, 50), "stretch_p99": _percentile(stretch, 99),
            "first_byte_p50": _percentile(first_bytes, 50), "first_byte_p99": _percentile(first_bytes, 99),
            "failed": sum(failures.values()), "failures": failures}


def _raise_open_files() -> None:
    """Thousands of connections need more descriptors than a default soft limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["latency", "ramp", "sustain"])
    parser.add_argument("--config", required=True, help="JSON of LatencyConfig, RampConfig or SustainConfig fields")
    args = parser.parse_args()
    raw = json.loads(args.config)
    _raise_open_files()
    if args.mode == "latency":
        result = asyncio.run(latency(LatencyConfig(**raw)))
    elif args.mode == "sustain":
        result = asyncio.run(sustain(SustainConfig(**raw)))
    else:
        result = asyncio.run(ramp(RampConfig(**raw)))
    print("STREAMS_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Instructions per stream event of the gateway's own code, counted by callgrind (see ``benchkit.instructions``).

A long answer is a stream of hundreds of events, and what the gateway does
per event (split, observe, account, write) is what limits how many streams a
node holds. Each path sends the same number of streamed requests twice in a
fresh process under callgrind, once with short answers and once with long
ones (``--short`` and ``--long`` text events per answer); the difference
divided by the extra events is the cost of one event, with the request's own
cost, start-up and warm-up taken out. For that the warm-up's answers are as
long in both runs (``WARM_EVENTS``) and its prompts are each run's own (misses
in both, though the runs share one Redis), and the spend ledger's
once-a-second flush is held to the one at exit (a paced run's seconds grow
with its events; a flush per second is not a cost of an event).

The upstream runs in this (uncounted) process: it answers a stream of as many
text events as the request's ``max_tokens``, each event its own HTTP chunk,
as a provider does, one every ``PACED_GAP`` seconds, so the gateway reads one
event per read as it does from a model writing its answer (``--burst``: the
whole answer in one write, its events read together, as when a gateway is
behind its streams; the gateway's reads then bring many events each). The paths:

* ``relay-openai``, ``relay-anthropic``: a caller of the target's own dialect,
  the provider's events relayed as they came, observed for usage and errors;
* ``translated``: an OpenAI caller of an Anthropic model, every event decoded
  and encoded again;
* ``floor``: a minimal WSGI app that relays the upstream's chunks as it reads
  them (urllib3 with the gateway's library patches, read as the gateway reads
  a stream: ``app.patches.urllib3.stream_reader``): the least an event can cost.

The gateway's own per event is a path's figure minus the floor's.
Run: ``.venv/bin/python -m benchkit.event_instructions [--paths ...]`` from
scripts/ (PYTHONPATH=.:..); needs valgrind. About a minute per path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchkit import answers, callgrind

PATHS = ("relay-openai", "relay-anthropic", "translated", "floor")
# path -> (the caller's request builder, the model it asks for, the URL path it posts to)
CALLERS = {
    "relay-openai": (answers.openai_request, answers.OPENAI_MODEL, "/v1/chat/completions"),
    "relay-anthropic": (answers.anthropic_request, answers.ANTHROPIC_MODEL, "/v1/messages"),
    "translated": (answers.openai_request, answers.ANTHROPIC_MODEL, "/v1/chat/completions"),
    "floor": (answers.openai_request, answers.OPENAI_MODEL, "/v1/chat/completions"),
}
WARM_STREAMS = 30
# Text events per warm-up answer: the same in both runs of a path, so the warm-up cancels out of their
# difference (warm-up answers as long as the counted ones would add their events to it, uncounted).
WARM_EVENTS = 20
# The spend ledger's flusher wakes this often (once a second in a worker): never during a run, whose one flush
# is then the one at exit. A flush per second of a run is no cost of an event, but a paced run's seconds grow
# with its answers' length, so its flushes would be counted as the events' (some 7,600 instructions each).
SPEND_FLUSH_INTERVAL = 24 * 3600.0
# Between two events of a paced answer: far longer than the counted gateway (under callgrind, some 50x slower
# than native) takes to pass one event on, so each read brings one event.
PACED_GAP = 0.01


def stream_events(path: str, body: bytes) -> list[bytes]:
    """The answer to one upstream request: as many text events as its ``max_tokens``."""
    words = answers.repeated_words(int(json.loads(body)["max_tokens"]))
    if path.startswith("/v1/messages"):
        return answers.anthropic_sse_events(words=words)
    return answers.openai_sse_events(words=words)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked answers

    gap = 0.0  # seconds between events; 0: the whole answer in one write (a burst)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        events = stream_events(self.path, body)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        if not self.gap:
            self.wfile.write(head + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n")
            return
        self.wfile.write(head)
        for event in events:  # one event per receive: the counted gateway (under valgrind) reads each alone
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(self.gap)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


class StreamUpstream:
    """The counted process's upstream (OpenAI and Anthropic paths), served by a thread of this process."""

    def __init__(self, gap: float = PACED_GAP) -> None:
        """``gap``: seconds between events (``0``: each answer in one write, its events arriving together)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("_Paced", (_Handler,), {"gap": gap}))
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.openai_base_url = f"http://127.0.0.1:{port}/v1"
        self.anthropic_base_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StreamUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def request_bodies(path: str, events: int, n: int) -> list[bytes]:
    """``n`` streamed requests of ``path`` whose answers carry ``events`` text events each (unique prompts:
    each is a cache miss, so every one is streamed from the upstream)."""
    build, model, _ = CALLERS[path]
    return [build(f"stream {events} {i}", model=model, stream=True).replace(
        b'"max_tokens":64', b'"max_tokens":%d' % events) for i in range(n)]


FLOOR_APP = '''
import urllib3

from app.patches import urllib3 as urllib3_patches

UPSTREAM = {upstream!r}
pool = urllib3_patches.prepare_pool(urllib3.PoolManager(maxsize=8, retries=False))


def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    up = pool.request("POST", UPSTREAM + environ["PATH_INFO"], body=body, preload_content=False,
                      headers={{"content-type": "application/json", "accept": "text/event-stream"}})
    start_response("200 OK", [("content-type", "text/event-stream")])

    def relay():
        read = urllib3_patches.stream_reader(up)  # as the gateway reads a stream
        try:
            while True:
                chunk = read(65536)
                if not chunk:
                    return
                yield chunk
        finally:
            up.release_conn()
    return relay()
'''


def floor_app(openai_url: str):  # type: ignore[no-untyped-def]
    """The floor: relays the upstream's chunks as it reads them, with the gateway's library patches and its
    way of reading a stream."""
    from app import patches

    patches.install(True)
    namespace: dict = {}
    exec(FLOOR_APP.format(upstream=openai_url.rsplit("/v1", 1)[0]), namespace)
    return namespace["app"]


def child(path: str, events: int, streams: int, redis_url: str, openai_url: str, anthropic_url: str,
          extra: list[str]) -> None:
    """Inside valgrind: build the app, warm it up, then serve ``streams`` streamed requests of ``path``."""
    from benchkit import gateway as gw
    from benchkit.inprocess import measure, worker_gateway

    class Upstream:
        openai_base_url, anthropic_base_url = openai_url, anthropic_url

    config = gw.BenchConfig(None)
    sys.stderr = open(os.devnull, "w")  # the access lines are formatted and written, then dropped
    try:
        if path == "floor":
            app, headers = floor_app(openai_url), {}
        else:
            gateway = worker_gateway(Upstream, redis_url, config, dict(e.split("=", 1) for e in extra))
            gateway.spend.flush_interval = SPEND_FLUSH_INTERVAL
            app = gateway.app
            headers = gw.auth_headers()
        url_path = CALLERS[path][2]
        for body in request_bodies(path, WARM_EVENTS, WARM_STREAMS):  # prompts of this run only: cache misses
            measure(app, [body.replace(b"stream ", b"warm %d " % events)], headers, url_path)
        gc.collect()
        gc.freeze()  # as in benchkit.instructions: a collection of the start-up heap is not per event
        measure(app, request_bodies(path, events, streams), headers, url_path)
    finally:
        sys.stderr = sys.__stderr__
        config.cleanup()


def count(path: str, events: int, streams: int, redis_url: str, upstream: StreamUpstream,
          extra: list[str]) -> int:
    return callgrind.collected("benchkit.event_instructions", [path, str(events), str(streams), redis_url,
                                                                upstream.openai_base_url,
                                                                upstream.anthropic_base_url, *extra],
                               callgrind.BENCH_ENV, callgrind.ROOT)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:8], sys.argv[8:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(PATHS), help="any of " + ", ".join(PATHS))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="more gateway environment (a variant to price)")
    parser.add_argument("--streams", type=int, default=20, help="streamed requests per counted run")
    parser.add_argument("--short", type=int, default=20, help="text events per answer in the first run")
    parser.add_argument("--long", type=int, default=120, help="text events per answer in the second run")
    parser.add_argument("--burst", action="store_true",
                        help="each answer in one write (its events arrive together) instead of one event per read")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown or any("=" not in e for e in args.env) or args.long <= args.short:
        parser.error(f"unknown paths {sorted(unknown)}, an --env without '=' or --long not above --short")
    from benchkit.procs import RedisServer

    callgrind.compile_sources()
    upstream = StreamUpstream(0.0 if args.burst else PACED_GAP).start()
    redis = RedisServer().start()
    per: dict[str, float] = {}
    try:
        for path in paths:
            short, long = (count(path, e, args.streams, redis.url, upstream, args.env) for e in (args.short, args.long))
            per[path] = (long - short) / (args.streams * (args.long - args.short))
            print(f"{path}: {per[path]:,.0f} instructions per stream event ({args.streams} streams of "
                  f"{args.short} and of {args.long} text events: {short:,} and {long:,})", flush=True)
    finally:
        upstream.stop()
        redis.close()
    if "floor" in per:
        for path in paths:
            if path != "floor":
                print(f"the gateway's own per {path} event: {per[path] - per['floor']:,.0f} instructions "
                      f"({path} minus the floor)")
    if args.env:
        print("gateway environment added: " + " ".join(args.env))


if __name__ == "__main__":
    main()

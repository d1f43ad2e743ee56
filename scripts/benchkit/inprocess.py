"""CPU per request of the gateway's own code, in one process and one thread, for before/after figures.

The load benchmark on a shared 2-core machine is noisy; this is not. It
builds the app with ``create_gateway`` exactly as a worker does (multiprocess
metrics, JSON access log to a file, L1/L2 per the environment), calls the
WSGI app directly (no gunicorn, no sockets on the client side) against
nginx as upstream, and reports CPU microseconds per request
(``time.process_time``) for the miss path and a repeated body.
Run: ``.venv/bin/python -m benchkit.inprocess [--requests N]`` from scripts/ (PYTHONPATH=.:..).
"""

from __future__ import annotations

import argparse
import io
import logging.config
import os
import sys
import tempfile
import time

from benchkit import answers, nginx
from benchkit.procs import RedisServer


def environ(body: bytes, headers: dict[str, str], path: str = "/v1/chat/completions") -> dict:
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
           "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
           "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1"}
    for k, v in headers.items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    return env


def worker_app(upstream, redis_url: str, config, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The WSGI app as a gunicorn worker builds it (``worker_gateway``'s app)."""
    return worker_gateway(upstream, redis_url, config, extra).app


def worker_gateway(upstream, redis_url: str, config, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The gateway (app, cache, router...) as a gunicorn worker builds it, with the benchmark's environment.

    The library patches and production logging too (``app.patches.install`` and ``logconfig_dict`` from the
    same settings gunicorn.conf.py uses, before the app is imported), so the access line costs what it
    costs in a worker. ``extra``: more gateway environment (a variant to price). Sets a private
    multiprocess metrics folder first, so call it before anything imports ``app.observability.metrics``.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="llm-edge-bench-metrics-")
    from app import patches
    from app.config.settings import Settings
    from benchkit import gateway as gw

    env = gw.gateway(upstream=upstream, redis_url=redis_url, config=config, workers=1, threads=8, extra=extra).env
    settings = Settings.from_env(env)
    patches.install(settings.patches_enabled)
    from app.factory import create_gateway
    from app.observability.logging import logconfig_dict

    logging.config.dictConfig(logconfig_dict(settings.log_level))
    return create_gateway(settings, env)


def measure(app, bodies, headers: dict[str, str], path: str = "/v1/chat/completions") -> float:
    def start_response(status, hdrs, exc_info=None):
        if not status.startswith("200"):
            raise RuntimeError(f"gateway answered {status}")
    started = time.process_time()
    n = 0
    for body in bodies:
        answer = app(environ(body, headers, path), start_response)
        for _chunk in answer:
            pass
        if hasattr(answer, "close"):
            answer.close()  # as every WSGI server does after the last byte: the deferred steps run here
        n += 1
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    from benchkit import gateway as gw

    upstream = nginx.NginxUpstream().start()
    redis = RedisServer().start()
    config = gw.BenchConfig(None)
    log_file = tempfile.NamedTemporaryFile("w", prefix="llm-edge-bench-inproc-", suffix=".log", delete=False)
    sys.stderr = log_file  # the JSON access log goes to a file, as under gunicorn in the benchmark
    try:
        app = worker_app(upstream, redis.url, config)
        headers = gw.auth_headers()
        for _ in range(200):
            measure(app, [answers.openai_request("warm")], headers)
        n = args.requests
        miss = measure(app, [answers.openai_request(f"unique prompt {i}") for i in range(n)], headers)
        fixed = answers.openai_request("the same prompt")
        repeat = measure(app, [fixed] * n, headers)
        print(f"CPU per request, one thread, {n} requests: miss {miss:.0f} us, same body {repeat:.0f} us",
              file=sys.__stdout__)
    finally:
        sys.stderr = sys.__stderr__
        upstream.stop()
        redis.close()
        config.cleanup()


if __name__ == "__main__":
    main()

"""gunicorn settings and hooks: ``gunicorn -c gunicorn.conf.py app.wsgi:app``.

Read once by the master. It validates the whole configuration before any
worker starts (one clear line and exit 2 on a bad value), gives this gateway
instance a private Prometheus multiprocess folder *before* anything imports
prometheus_client, serves the summed metrics from the master on METRICS_PORT,
and marks SIGTERM'd workers as draining so readiness turns 503 at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from app.config.settings import ConfigError, Settings, is_configured, load_environ, secrets_from_files

# multiproc imports nothing of prometheus_client: prepare_dir() below must run before anything does.
from app.config.snapshot import ConfigSnapshot
from app.observability import multiproc
from app.patches import gunicorn_connections

_environ = load_environ()
# The one write of the environment here: the workers (and prometheus_client in them) read it after fork, so
# the .env values go into it too. Every setting is read from _environ through Settings, never from here.
os.environ.update({k: v for k, v in _environ.items() if k not in os.environ})
try:
    _metrics_dir = multiproc.prepare_dir()  # PROMETHEUS_MULTIPROC_DIR: the one place that prepares it
except ConfigError as _exc:
    print(f"llm-edge-agent: configuration error: {_exc}", file=sys.stderr, flush=True)
    sys.exit(2)

# Workers load the master's validated copies of the YAML files (app/config/snapshot.py): a broken edit
# stops the first start here, once, but a SIGHUP with a broken file keeps the last good configuration.
_config = ConfigSnapshot.for_this_master()
try:
    _staged = _config.stage(_environ)
    _settings = Settings.from_env({**_environ, **_staged})
    from app.accounting.cost import PriceTable
    from app.providers.routing import Router

    Router.from_settings(_settings, {**_environ, **_staged})
    PriceTable.load(_settings.pricing_file)
    from app.config.tls import check_tls
    from app.limits.config import load_access_config

    load_access_config(_settings)  # clients + rate limits, validated together (a client's tier must exist)
    check_tls(_settings)  # a certificate gunicorn could not use stops start-up here, not at each handshake
    _config_files = _config.promote(_staged)
except ConfigError as _exc:
    if not _config.has_current:
        print(f"llm-edge-agent: configuration error: {_config.explain(str(_exc))}", file=sys.stderr, flush=True)
        sys.exit(2)
    print("llm-edge-agent: configuration error on reload, keeping the running configuration: "
          f"{_config.explain(str(_exc))}", file=sys.stderr, flush=True)
    _config_files = _config.current_overrides()
    _settings = Settings.from_env({**_environ, **_config_files})
raw_env = [f"{_name}={_path}" for _name, _path in _config_files.items()]

from app.observability.logging import logconfig_dict  # noqa: E402

bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_concurrency
worker_class = "gthread"
threads = _settings.gunicorn_threads
# Requests in progress (threads) plus idle kept-alive connections, per worker; bounded by the open-file
# limit (docs/deployment.md, "Connections and timeouts"): gunicorn's accept() dies on EMFILE.
worker_connections = gunicorn_connections.fit_worker_connections(_settings.gunicorn_worker_connections, threads)
preload_app = False  # pools, Redis clients and L1 are built after fork, per worker
keepalive = _settings.gunicorn_keepalive  # above load balancers' idle timeouts: see app/config/settings.py
timeout = _settings.gunicorn_timeout  # worker heartbeat, not a request limit
graceful_timeout = _settings.gunicorn_graceful_timeout
# Peers whose X-Forwarded-Proto gunicorn believes; the app applies the same list to X-Forwarded-For.
forwarded_allow_ips = ("*" if _settings.forwarded_allow_ips is None
                       else ",".join(str(_net) for _net in _settings.forwarded_allow_ips))
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16384
if _settings.tls_cert_path and _settings.tls_key_path:
    certfile = _settings.tls_cert_path
    keyfile = _settings.tls_key_path
logconfig_dict = logconfig_dict(_settings.log_level, _settings.log_file)
loglevel = _settings.log_level.lower()
accesslog = None
logging.captureWarnings(True)  # Python warnings become JSON log lines too
proc_name = "llm-edge-agent"
control_socket_disable = True  # gunicorn 27 control socket: one fixed path per $HOME would be shared by instances


def on_starting(server) -> None:  # type: ignore[no-untyped-def]
    """Say, once, what this instance is missing."""
    log = server.log
    for name in secrets_from_files(_environ):
        log.info("%s read from %s_FILE", name, name)
    missing = [name for name, key in (("OPENAI_API_KEY", _settings.openai_api_key),
                                      ("ANTHROPIC_API_KEY", _settings.anthropic_api_key)) if not key]
    if missing:
        log.warning("no key for %s: requests to that provider answer 503 until it is set "
                    "(scripts/serve starts a local emulator instead)", ", ".join(missing))
    _access_report(log)
    if _settings.enable_tracing and not is_configured(_environ, "OTLP_ENDPOINT"):
        log.warning("tracing: OTLP_ENDPOINT is not set, so spans go to %s (the docker-compose collector) and are "
                    "dropped while nothing answers there; set OTLP_ENDPOINT, or ENABLE_TRACING=false",
                    _settings.otlp_endpoint)
    import dataclasses

    import redis  # the rate limiter uses Redis even without the L2 cache

    from app.resilience.redis_clients import make_redis

    redises = [("Redis", _settings.redis_url, "the per-worker L1 cache and local rate limits")]
    if _settings.cache_redis_url and _settings.enable_l2_cache:
        redises = [("Redis", _settings.redis_url, "local rate limits"),
                   ("The cache's Redis (CACHE_REDIS_URL)", _settings.cache_redis_url, "the per-worker L1 cache")]
    for what, url, fallback in redises:
        try:
            patient = dataclasses.replace(_settings, redis_connect_timeout=0.5, redis_socket_timeout=0.5)
            make_redis(patient, url).ping()  # one Redis, a cluster or the Sentinels' primary, as the workers
        except (redis.RedisError, OSError) as exc:
            log.warning("%s at %s is unreachable (%s): running with %s; /health says degraded until it answers",
                        what, _redact_url(url), type(exc).__name__, fallback)


def _redact_url(url: str) -> str:
    """A Redis URL without its password."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if "@" in rest else url


def on_reload(server) -> None:  # type: ignore[no-untyped-def]
    """SIGHUP: the config above was read again; the new workers take it, or the last good one."""
    _access_report(server.log)


def _access_report(log) -> None:  # type: ignore[no-untyped-def]
    """Warn when the configuration in force (the current copies of the files) leaves the gateway open."""
    from app.limits.config import load_access_config, startup_warnings

    in_force = Settings.from_env({**_environ, **_config_files})
    for line in startup_warnings(load_access_config(in_force)):
        log.warning(line)


def when_ready(server) -> None:  # type: ignore[no-untyped-def]
    """Serve /metrics from the master, summed over every live worker's files."""
    multiproc.serve_metrics(_settings.host, _settings.metrics_port, server.log)


def post_fork(server, worker) -> None:  # type: ignore[no-untyped-def]
    """Workers must not hold the master's metrics socket open."""
    multiproc.close_in_worker()


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    """On SIGTERM, turn readiness to 503 before gunicorn stops accepting and drains.

    Streams still running shortly before gunicorn's graceful_timeout ends them (killing the worker) are
    ended first with an error event in their format (app/http/draining.py): a clean error, not a cut body.
    The app is built by now: the garbage collector is set for serving (app/gc_tuning.py).
    """
    from app import wsgi
    from app.gc_tuning import tune_worker_gc

    tune_worker_gc()

    default_exit = worker.handle_exit
    grace = float(worker.cfg.graceful_timeout)
    cut_after = grace - min(1.0, grace / 3)  # time to write the error event and close before the kill

    def drain(sig, frame) -> None:  # type: ignore[no-untyped-def]
        wsgi.gateway.draining.start_draining(cut_streams_after=cut_after)
        default_exit(sig, frame)

    signal.signal(signal.SIGTERM, drain)


def child_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    """A dead worker's live gauges leave the sum; its counters stay."""
    multiproc.mark_worker_dead(worker.pid)


def on_exit(server) -> None:  # type: ignore[no-untyped-def]
    _config.remove()
    multiproc.remove_dir()


# --- Hot path (measured with scripts/bench.py; see docs/performance.md) ------------------------------
from gunicorn.glogging import Logger as _GunicornLogger  # noqa: E402

from app import patches  # noqa: E402


class QuietAccessLogger(_GunicornLogger):
    """gunicorn's logger without gunicorn's access line, which ours (llm_edge.access) replaces.

    With a ``logconfig_dict`` gunicorn still builds its access-log atoms for every
    request, only for the WARNING level of ``gunicorn.access`` to drop the line:
    about 4% of a worker's CPU on the miss path (py-spy, scripts/bench.py --profile miss).
    """

    access_log_enabled = False

    def access(self, resp, req, environ, request_time) -> None:  # type: ignore[no-untyped-def]
        return None


logger_class = QuietAccessLogger

# Read by the connection patch (app/patches/gunicorn_connections.py) in the forked workers.
gunicorn_connections.set_header_timeout(_settings.gunicorn_header_timeout)
# The library patches (app/patches/), made in the master: every worker inherits them. LLM_EDGE_PATCHES=false
# leaves every library as shipped.
_declined = [_name for _name, _in_force in patches.install(_settings.patches_enabled).items() if not _in_force]
if _settings.patches_enabled and _declined:
    print(f"llm-edge-agent: warning: library patches declined for {', '.join(_declined)}: that library is not "
          "the version its patch in app/patches/ knows, so it runs as shipped", file=sys.stderr, flush=True)

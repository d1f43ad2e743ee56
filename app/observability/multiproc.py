"""The gunicorn master's side of multiprocess metrics: a private folder and the /metrics server.

prometheus_client picks its multiprocess backend when it is first imported,
so ``prepare_dir`` runs at the top of gunicorn.conf.py, before anything
imports it. The folder is private to this gateway instance: a fresh one is
made inside ``PROMETHEUS_MULTIPROC_DIR`` (or the temp folder) and the
variable is pointed at it, so two gateways on one host never share or wipe
each other's files. The master holds an exclusive ``flock`` on its folder for
its whole life (workers inherit it); a folder whose lock nobody holds belongs
to a gateway that is gone and is removed at the next start.

gunicorn re-executes gunicorn.conf.py on SIGHUP; this module is imported
once, so the folder, its lock and the metrics server survive a reload
instead of being made (or wiped) again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from app.config.settings import ConfigError

_PREFIX = "llm-edge-multiproc-"
_BASE_ENV = "LLM_EDGE_METRICS_PARENT"  # where the private folder was made, for a re-exec'd master (USR2)
_RETRY_SECONDS = 2.0

_state: dict[str, Any] = {}


@contextlib.contextmanager
def _locked(path: str, blocking: bool = True):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)


def _remove_abandoned(base: str) -> None:
    """Delete the folders of gateways that are gone (nobody holds their lock)."""
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if not name.startswith(_PREFIX) or not os.path.isdir(path):
            continue
        try:
            with _locked(path, blocking=False):
                shutil.rmtree(path, ignore_errors=True)
        except BlockingIOError:
            continue  # a live gateway's folder
        except OSError:
            continue


def prepare_dir(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """This master's private, empty metrics folder, exported as PROMETHEUS_MULTIPROC_DIR.

    The one place that prepares the metrics folder (docker/entrypoint.sh leaves it to this). It reads and
    writes the process environment itself, not Settings: prometheus_client reads PROMETHEUS_MULTIPROC_DIR
    from there in every worker, and this runs before the settings are validated (and before anything
    imports prometheus_client). A folder it cannot make is a ConfigError naming the variable.
    """
    if _state.get("pid") == os.getpid():
        return str(_state["dir"])
    base = environ.get(_BASE_ENV) or environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.gettempdir()
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        # Creating our folder and removing abandoned ones happen under one lock on the parent, so a
        # gateway starting next door never sees our folder before we hold its lock.
        with _locked(base):
            _remove_abandoned(base)
            path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base)
            fd = os.open(path, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR: cannot make a metrics folder in {base!r} "
                          f"({exc.strerror})") from None
    _state.update(pid=os.getpid(), dir=path, lock_fd=fd, server=None)
    environ[_BASE_ENV] = base
    environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def current_dir() -> str:
    """The metrics folder of this process (a worker's, inherited from its master)."""
    return os.environ["PROMETHEUS_MULTIPROC_DIR"]  # set by prepare_dir, read by prometheus_client too


def remove_dir() -> None:
    """The master's exit: its folder goes with it."""
    path = _state.get("dir")
    if path and _state.get("pid") == os.getpid():
        shutil.rmtree(path, ignore_errors=True)


def serve_metrics(host: str, port: int, log: logging.Logger | Any) -> None:
    """Serve the workers' summed metrics from the master on ``host:port``, once per master.

    If the port is taken (an old master still holding it during a USR2
    upgrade, say) the gateway keeps serving requests and binding is retried
    in the background until it succeeds.
    """
    if _state.get("server_started"):
        return
    _state["server_started"] = True
    try:
        _bind(host, port, log)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%s (%s); retrying every %ss", host, port, exc.strerror,
                  _RETRY_SECONDS)
        threading.Thread(target=_bind_until_done, args=(host, port, log), name="metrics-bind",
                         daemon=True).start()


def _bind(host: str, port: int, log: logging.Logger | Any) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    from app.patches import prometheus_client as prometheus_patches

    registry = CollectorRegistry()
    prometheus_patches.collector(registry)  # skips a worker's file still being created (app/patches/)
    server, _ = start_http_server(port, addr=host, registry=registry)
    _state["server"] = server
    log.info("metrics on http://%s:%s/metrics (multiprocess dir %s)", host, server.server_port, _state.get("dir"))


def _bind_until_done(host: str, port: int, log: logging.Logger | Any) -> None:
    while True:
        time.sleep(_RETRY_SECONDS)
        try:
            _bind(host, port, log)
            return
        except OSError:
            continue


def close_in_worker() -> None:
    """A forked worker must not keep the master's metrics socket open."""
    server = _state.get("server")
    if server is not None:
        server.socket.close()


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight, breaker state); its counters stay in the sum."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, _state.get("dir"))

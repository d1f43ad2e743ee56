"""Start and stop the real processes the end-to-end tests talk to.

Each helper starts its process on free ports, waits until it answers, and
keeps its output in a file so a failing test can show it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def terminate(proc: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL to its whole session if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))


class RedisServer:
    """A private redis-server on a free port; ``stop()`` and ``start()`` to test outages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="llm-edge-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/install-test-tools.sh")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, what="redis-server")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# A rate-limits file (RATE_LIMITS_FILE) whose limits no test or benchmark load reaches: the limiter still runs.
UNREACHABLE_RATE_LIMITS = ("rate_limiting:\n  global:\n    requests_per_second: 100000000\n  per_client:\n"
                           "    tier_free: 100000000\n    tier_pro: 100000000\n    tier_enterprise: 100000000\n")


def whole_lines_of(text: str) -> str:
    """``text`` without an unfinished last line: a log being written may end in the first part of one."""
    return text[:text.rfind("\n") + 1]


class GatewayProcess:
    """``gunicorn -c gunicorn.conf.py app.wsgi:app`` with the given environment, on free ports."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 8, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="llm-edge-gateway-", suffix=".log")[1])
        self.env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "ENABLE_TRACING": "false",
            "ENABLE_L2_CACHE": "false",
            # Not the machine's Redis on 6379 (the settings' default): a test that wants Redis starts its own
            # (RedisServer) and passes its URL; the others run as a gateway does when Redis is down.
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "LOG_LEVEL": "info",
            "GUNICORN_GRACEFUL_TIMEOUT": "10",
            **env,
        }
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("TLS_CERT_PATH") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait: bool = True) -> GatewayProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app.wsgi:app"],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait:
            try:
                wait_until(self._ready, timeout=30, what="gateway /health/live")
            except TimeoutError:
                self.stop()
                raise RuntimeError(f"gateway did not start:\n{self.logs(whole_lines=False)}") from None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs(whole_lines=False)}")
        pool = _http
        if self.env.get("TLS_CERT_PATH"):  # trust the test's own self-signed certificate
            pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5),
                                       ca_certs=self.env["TLS_CERT_PATH"], assert_hostname=False)
        return pool.request("GET", self.url + "/health/live").status == 200 and self._metrics_up()

    def _metrics_up(self) -> bool:
        return _http.request("GET", self.metrics_url).status == 200

    def logs(self, whole_lines: bool = True) -> str:
        """What the gateway has logged. A worker may be writing a line right now (access lines are written
        just after each answer), and a reader can catch its first part: by default that unfinished last
        line is left out, as it is not a log line yet."""
        text = self.log_path.read_text(errors="replace")
        return whole_lines_of(text) if whole_lines else text

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        return terminate(self.proc, timeout)


def after_gunicorn_conf(check: str, home: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``check`` (Python source) in a fresh interpreter right after loading gunicorn.conf.py, as gunicorn's
    master does before it forks the workers, with ``extra_env`` added; its on_exit hook cleans up after."""
    source = ("import runpy\n"
              "conf = runpy.run_path('gunicorn.conf.py')\n"
              "try:\n" + "".join(f"    {line}\n" for line in check.splitlines()) +
              "finally:\n"
              "    conf['on_exit'](None)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS", "LLM_EDGE"))}
    return subprocess.run([sys.executable, "-c", source], cwd=ROOT, env={**env, "HOME": str(home), **(extra_env or {})},
                          capture_output=True, text=True, timeout=60)

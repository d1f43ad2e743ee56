"""Peers measured side by side with the gateway: LiteLLM proxy, the best-known Python LLM gateway.

``scripts/bench.py --peers litellm`` installs LiteLLM into its own virtual
environment (``.venv-peers/litellm``, ~750 MB, never a dependency of the
project), starts its proxy in front of the same nginx upstream, and measures
it with the same wrk load as the gateway's miss rows.

Set up the way LiteLLM's docs recommend for production, and leaner than the
gateway where they differ, so the comparison flatters the peer, not us: its
default server (uvicorn, with uvloop and the C HTTP parser httptools) with as
many workers as the gateway, a master key (its client auth: with no database,
a string compare), no database, no Redis, no response cache (the gateway
still looks up and fills L1 and L2 on every miss), no retries, no callbacks,
logs at ERROR (the gateway writes a JSON access line per request), the model
cost map read from the package instead of fetched from GitHub at start-up.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3

from benchkit import answers
from benchkit.procs import ROOT, LocalServer, Managed, free_port, wait_until

# The newest release whose `proxy` extra installs from PyPI as mirrored here: 1.108.8 and later ask for
# litellm-proxy-extras / litellm-enterprise / litellm-proxy releases the registry does not have.
LITELLM_VERSION = "1.108.7"
DEFAULT_VENV = ROOT / ".venv-peers" / "litellm"

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30), maxsize=32)


def installed_version(venv: Path) -> str | None:
    """The LiteLLM version in ``venv``, or None when it has no ``litellm`` command."""
    if not (venv / "bin" / "litellm").exists():
        return None
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def ensure_litellm(venv: Path = DEFAULT_VENV) -> str:
    """LiteLLM's proxy in ``venv``, installed at the pinned version when missing; its version."""
    version = installed_version(venv)
    if version is not None:
        return version
    print(f"bench: installing LiteLLM {LITELLM_VERSION} with its proxy into {venv} (~750 MB, a minute or two)",
          file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)  # a venv's python makes a venv of its base Python
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    # httptools: uvicorn's C parser, which LiteLLM's proxy extra leaves out (its pure-Python h11 is slower).
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}", "httptools"],
                   check=True)
    version = installed_version(venv)
    if version is None:
        raise RuntimeError(f"LiteLLM did not install into {venv}")
    return version


# LiteLLM calls upstream through the OpenAI SDK, which asks for JSON even when streaming, and the
# benchmark's nginx picks SSE by the Accept header: streams go to an alias that asks for SSE.
STREAM_MODEL = answers.OPENAI_MODEL + "-sse"


def litellm_config(openai_base_url: str, model: str = answers.OPENAI_MODEL) -> str:
    """The proxy's config.yaml: the OpenAI-compatible model (and its SSE alias) at the upstream, nothing else on."""
    entries = ""
    for name, extra in ((model, ""), (STREAM_MODEL, "      extra_headers: {accept: text/event-stream}\n")):
        entries += (f"  - model_name: {name}\n"
                    "    litellm_params:\n"
                    f"      model: openai/{model}\n"
                    f"      api_base: {openai_base_url}\n"
                    "      api_key: sk-bench-upstream\n" + extra)
    return (
        "model_list:\n" + entries +
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"  # on, it ignores LITELLM_LOG and logs every request
        "  cache: false\n"
        "  callbacks: []\n"
        "  num_retries: 0\n"
        "  request_timeout: 600\n"
        "general_settings: {}\n"
    )


class LiteLLMPeer(LocalServer):
    """LiteLLM's proxy (uvicorn, ``workers`` processes) in front of ``openai_base_url``, on a free port."""

    def __init__(self, openai_base_url: str, *, workers: int, version: str, venv: Path = DEFAULT_VENV) -> None:
        self.version = version  # from ensure_litellm, which asked the venv
        self.workers = workers
        self.port = free_port()
        self.key = "sk-bench-" + secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="llm-edge-bench-litellm-"))
        (self.dir / "config.yaml").write_text(litellm_config(openai_base_url))
        env = {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(self.dir)),
            "LANG": "C.UTF-8",
            "LITELLM_MODE": "PRODUCTION",  # no .env read from the working directory
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else every process fetches it from GitHub at start-up
            "LITELLM_TELEMETRY_DISABLED": "true",
            "LITELLM_MASTER_KEY": self.key,  # 1.108 refuses to start without one
        }
        # uvicorn kills a worker that misses its 5 s health check; importing LiteLLM on a busy core can take longer.
        self.proc = Managed("litellm", [str(venv / "bin" / "litellm"), "--config", str(self.dir / "config.yaml"),
                                        "--host", "127.0.0.1", "--port", str(self.port), "--num_workers",
                                        str(workers), "--timeout_worker_healthcheck", "30"],
                            env=env, cwd=self.dir)

    @property
    def label(self) -> str:
        return f"LiteLLM proxy {self.version}"

    @property
    def setup(self) -> str:
        """How it runs, for the table's header: what this module configures, in a line."""
        return (f"{self.label}, uvicorn + httptools, {self.workers} workers, master key, no database, no cache, "
                "no retries, logs at ERROR (scripts/benchkit/peers.py)")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait(self, connections: int = 32) -> LiteLLMPeer:
        """Ready, then warmed: its liveness answers with one worker up, and each worker's first request is slow."""
        def alive() -> bool:
            self.proc.check_alive()
            try:
                return _http.request("GET", self.url + "/health/liveliness", timeout=2).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        wait_until(alive, timeout=120, what="LiteLLM proxy to answer /health/liveliness")

        def one(i: int) -> None:  # a fresh connection each, so the kernel spreads them over the workers
            http = urllib3.PoolManager(retries=False, timeout=30)
            resp = http.request("POST", self.url + "/v1/chat/completions", body=answers.openai_request(f"warm {i}"),
                                headers={"content-type": "application/json", **self.auth_headers()})
            if resp.status != 200:
                raise RuntimeError(f"LiteLLM proxy answered {resp.status}: {resp.data[:300]!r}")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(connections)))
        return self

    def stop(self) -> None:
        self.proc.stop(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)

"""Peers measured side by side with the gateway: LiteLLM's proxy and Portkey's AI gateway.

``scripts/bench.py --peers litellm,portkey`` installs each peer on first use
into ``.venv-peers/`` (never a dependency of the project), starts it in front
of the same nginx upstream with as many processes as the gateway has workers,
and measures it with the same load as the gateway's miss rows (and streams,
where the peer can stream).

- **LiteLLM proxy**, the best-known Python LLM gateway, in its own virtual
  environment (``.venv-peers/litellm``, ~750 MB). Set up the way its docs
  recommend for production, and leaner than the gateway where they differ, so
  the comparison flatters the peer, not us: its default server (uvicorn, with
  uvloop and the C HTTP parser httptools), a master key (its client auth: with
  no database, a string compare), no database, no Redis, no response cache
  (the gateway still looks up and fills L1 and L2 on every miss), no retries,
  no callbacks, logs at ERROR (the gateway writes a JSON access line per
  request), the model cost map read from the package instead of fetched from
  GitHub at start-up.
- **Portkey's AI gateway**, the best-known open-source LLM gateway outside
  Python (TypeScript on Node, Hono), from the npm registry
  (``.venv-peers/portkey``, ~25 MB). Its server is one process; here
  ``node:cluster`` runs as many as the gateway has workers (what pm2's cluster
  mode does), sharing one port. It has no client auth, cache, retries or
  request log unless asked, and is asked for none: the provider and the
  upstream come in its ``x-portkey-*`` headers.

"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import urllib3

from benchkit import answers
from benchkit.procs import ROOT, LocalServer, Managed, free_port, wait_until

PEER_NAMES = ("litellm", "portkey")

# The newest release whose `proxy` extra installs from PyPI as mirrored here: 1.108.8 and later ask for
# litellm-proxy-extras / litellm-enterprise / litellm-proxy releases the registry does not have.
LITELLM_VERSION = "1.108.7"
DEFAULT_VENV = ROOT / ".venv-peers" / "litellm"
# The newest release on the npm registry as mirrored here.
PORTKEY_VERSION = "1.15.2"
PORTKEY_DIR = ROOT / ".venv-peers" / "portkey"
PORTKEY_PACKAGE = "@portkey-ai/gateway"

_http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=30), maxsize=32)


class Peer(LocalServer):
    """A peer gateway the benchmark starts, warms and measures; subclasses say how it runs."""

    title = ""  # what it is called in the table, before its version
    ready_path = "/"  # answers 200 once the peer serves
    ready_timeout = 60.0
    stream_model = answers.OPENAI_MODEL  # the model its streams ask for
    not_streamed = ""  # why its streams are not measured, when they are not

    def __init__(self, kind: str, *, version: str, workers: int) -> None:
        self.version = version  # from its installer, which asked the installation
        self.workers = workers
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"llm-edge-bench-{kind}-"))  # its config and launcher

    @property
    def label(self) -> str:
        return f"{self.title} {self.version}"

    @property
    def setup(self) -> str:
        """How it runs, for the table's header: what this module configures, in a line."""
        raise NotImplementedError

    def request_headers(self) -> dict[str, str]:
        """What every request to it carries besides the body (its auth, its routing)."""
        raise NotImplementedError

    def wait(self, connections: int = 32) -> Self:
        """Serving, then warmed: a request on each of ``connections`` fresh connections (the first ones are slow)."""
        def ready() -> bool:
            self.proc.check_alive()
            try:
                return _http.request("GET", self.url + self.ready_path, timeout=2).status == 200
            except urllib3.exceptions.HTTPError:
                return False
        wait_until(ready, timeout=self.ready_timeout, what=f"{self.label} to answer {self.ready_path}")

        def one(i: int) -> None:  # a fresh connection each, so the kernel spreads them over the processes
            http = urllib3.PoolManager(retries=False, timeout=30)
            resp = http.request("POST", self.url + "/v1/chat/completions", body=answers.openai_request(f"warm {i}"),
                                headers={"content-type": "application/json", **self.request_headers()})
            if resp.status != 200:
                raise RuntimeError(f"{self.label} answered {resp.status}: {resp.data[:300]!r}")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(connections)))
        return self

    def stop(self) -> None:
        self.proc.stop(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


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


def litellm_config(openai_base_url: str, model: str = answers.OPENAI_MODEL, slow_base_url: str | None = None) -> str:
    """The proxy's config.yaml: the OpenAI-compatible model (and its SSE alias) at the upstream, the slow
    model at the drip upstream when given, nothing else on."""
    entries = ""
    for name, extra in ((model, ""), (STREAM_MODEL, "      extra_headers: {accept: text/event-stream}\n")):
        entries += (f"  - model_name: {name}\n"
                    "    litellm_params:\n"
                    f"      model: openai/{model}\n"
                    f"      api_base: {openai_base_url}\n"
                    "      api_key: sk-bench-upstream\n" + extra)
    if slow_base_url:
        entries += (f"  - model_name: {answers.SLOW_MODEL}\n"
                    "    litellm_params:\n"
                    f"      model: openai/{answers.SLOW_MODEL}\n"
                    f"      api_base: {slow_base_url}\n"
                    "      api_key: sk-bench-upstream\n")
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


class LiteLLMPeer(Peer):
    """LiteLLM's proxy (uvicorn, ``workers`` processes) in front of ``openai_base_url``, on a free port."""

    title = "LiteLLM proxy"
    ready_path = "/health/liveliness"  # answers with one worker up; the warm-up reaches the others
    ready_timeout = 120.0
    stream_model = STREAM_MODEL

    def __init__(self, openai_base_url: str, *, workers: int, version: str, venv: Path = DEFAULT_VENV,
                 slow_base_url: str | None = None) -> None:
        super().__init__("litellm", version=version, workers=workers)
        self.key = "sk-bench-" + secrets.token_hex(16)
        (self.dir / "config.yaml").write_text(litellm_config(openai_base_url, slow_base_url=slow_base_url))
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
    def setup(self) -> str:
        return (f"{self.label}, uvicorn + httptools, {self.workers} workers, master key, no database, no cache, "
                "no retries, logs at ERROR (scripts/benchkit/peers.py)")

    def request_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def portkey_version(directory: Path = PORTKEY_DIR) -> str | None:
    """The Portkey gateway version installed under ``directory``, or None."""
    package = directory / "node_modules" / PORTKEY_PACKAGE / "package.json"
    return json.loads(package.read_text())["version"] if package.exists() else None


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def ensure_portkey(directory: Path = PORTKEY_DIR) -> str:
    """Portkey's gateway under ``directory``, installed from npm at the pinned version when missing; its version."""
    version = portkey_version(directory)
    if version is not None:
        return version
    if not node_available():
        raise RuntimeError("--peers portkey needs Node.js and npm (Debian: apt-get install nodejs npm)")
    print(f"bench: installing {PORTKEY_PACKAGE} {PORTKEY_VERSION} into {directory} (npm, ~25 MB)", file=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "package.json").write_text(json.dumps(
        {"name": "llm-edge-bench-peer-portkey", "private": True, "dependencies": {PORTKEY_PACKAGE: PORTKEY_VERSION}}))
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, check=True)
    version = portkey_version(directory)
    if version is None:
        raise RuntimeError(f"{PORTKEY_PACKAGE} did not install into {directory}")
    return version


# Portkey's server is one process; node:cluster forks as many, and the primary hands each worker connections.
CLUSTER_LAUNCHER = """\
import cluster from 'node:cluster';

if (cluster.isPrimary) {
  for (let i = 0; i < Number(process.env.PEER_WORKERS); i++) cluster.fork();
} else {
  await import(process.env.PEER_SERVER);
}
"""


class PortkeyPeer(Peer):
    """Portkey's AI gateway (Node, ``workers`` processes through node:cluster) in front of ``openai_base_url``."""

    title = "Portkey gateway"
    not_streamed = (f"Portkey {PORTKEY_VERSION} answers every stream 500 on Node 20 "
                    "(TypeError: immutable in updateHeaders; Portkey-AI/gateway#1389, #1550)")

    def __init__(self, openai_base_url: str, *, workers: int, version: str, directory: Path = PORTKEY_DIR) -> None:
        super().__init__("portkey", version=version, workers=workers)
        self.openai_base_url = openai_base_url
        (self.dir / "cluster.mjs").write_text(CLUSTER_LAUNCHER)
        self.node = (subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
                     if shutil.which("node") else "(not installed)")
        server = directory / "node_modules" / PORTKEY_PACKAGE / "build" / "start-server.js"
        env = {**os.environ, "NODE_ENV": "production", "PEER_WORKERS": str(workers), "PEER_SERVER": str(server)}
        self.proc = Managed("portkey", ["node", str(self.dir / "cluster.mjs"), f"--port={self.port}", "--headless"],
                            env=env, cwd=self.dir)

    @property
    def setup(self) -> str:
        return (f"{self.label}, Node {self.node}, {self.workers} processes (node:cluster), no client auth, "
                "no cache, no retries, no request log (scripts/benchkit/peers.py)")

    def request_headers(self) -> dict[str, str]:
        # The upstream key goes to the provider; the provider and its URL are Portkey's routing headers.
        return {"Authorization": "Bearer sk-bench-upstream", "x-portkey-provider": "openai",
                "x-portkey-custom-host": self.openai_base_url}


def install(name: str, litellm_venv: Path = DEFAULT_VENV) -> str:
    """Install the peer called ``name`` when missing; its version."""
    return ensure_litellm(litellm_venv) if name == "litellm" else ensure_portkey()


def make_peer(name: str, version: str, openai_base_url: str, *, workers: int,
              litellm_venv: Path = DEFAULT_VENV, slow_base_url: str | None = None) -> Peer:
    """``slow_base_url``: the slow drip upstream, served as ``answers.SLOW_MODEL`` (the streams-at-scale rows)."""
    if name == "litellm":
        return LiteLLMPeer(openai_base_url, workers=workers, version=version, venv=litellm_venv,
                           slow_base_url=slow_base_url)
    return PortkeyPeer(openai_base_url, workers=workers, version=version)

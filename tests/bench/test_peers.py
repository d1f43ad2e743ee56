"""The side-by-side peers (LiteLLM proxy, Portkey's gateway): their setup, the flags, and real quick runs.

Portkey's real run installs it from npm when missing (~25 MB, seconds) and
runs wherever Node.js and npm are. LiteLLM's needs a ~750 MB virtual
environment, which ``scripts/bench.py --peers litellm`` makes on first use;
the test suite does not download it, so that run happens only where a
benchmark has installed it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit import answers
from benchkit.peers import (
    CLUSTER_LAUNCHER,
    DEFAULT_VENV,
    PORTKEY_VERSION,
    STREAM_MODEL,
    PortkeyPeer,
    ensure_portkey,
    installed_version,
    litellm_config,
    node_available,
)

pytestmark = pytest.mark.timeout(400)


def test_the_peer_routes_the_benchmark_model_to_the_same_upstream_with_nothing_else_on():
    config = yaml.safe_load(litellm_config("http://127.0.0.1:8099/v1"))
    plain, streams = config["model_list"]
    assert (plain["model_name"], streams["model_name"]) == (answers.OPENAI_MODEL, STREAM_MODEL)
    for entry in (plain, streams):
        assert entry["litellm_params"]["model"] == f"openai/{answers.OPENAI_MODEL}"  # its OpenAI-compatible provider
        assert entry["litellm_params"]["api_base"] == "http://127.0.0.1:8099/v1"
    # The bench's nginx answers SSE only when asked by Accept, which LiteLLM's OpenAI SDK never sends.
    assert "extra_headers" not in plain["litellm_params"]
    assert streams["litellm_params"]["extra_headers"] == {"accept": "text/event-stream"}
    settings = config["litellm_settings"]
    assert settings["cache"] is False and settings["num_retries"] == 0 and settings["callbacks"] == []
    assert not config["general_settings"]  # no database, no alerting


def test_portkey_is_routed_to_the_same_upstream_by_its_headers_and_runs_one_process_per_worker():
    peer = PortkeyPeer("http://127.0.0.1:8099/v1", workers=3, version=PORTKEY_VERSION)
    try:
        headers = peer.request_headers()
        assert headers["x-portkey-provider"] == "openai"
        assert headers["x-portkey-custom-host"] == "http://127.0.0.1:8099/v1"
        assert peer.proc.env["PEER_WORKERS"] == "3" and peer.proc.env["NODE_ENV"] == "production"
        assert peer.proc.env["PEER_SERVER"].endswith("@portkey-ai/gateway/build/start-server.js")
        assert (peer.dir / "cluster.mjs").read_text() == CLUSTER_LAUNCHER
        assert peer.proc.cmd[-2:] == [f"--port={peer.port}", "--headless"]
    finally:
        peer.stop()


def test_peer_rows_need_a_peer():
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--only", "peer"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--only peer needs --peers (litellm,portkey)" in proc.stderr


def test_an_unknown_peer_is_refused():
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--peers", "litellm,kong"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--peers: unknown peers kong (known: litellm, portkey)" in proc.stderr


def quick_run(peers: str, only: str) -> str:
    """``scripts/bench.py --quick`` with ``peers`` beside the gateway: its output, once it succeeded."""
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--only", only, "--peers", peers],
                          cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def peer_rows(out: str, label: str, streamed: bool) -> None:
    """The peer's rows answered with no errors, and the side-by-side line compares it with the gateway."""
    names = [f"peer: {label}, unique bodies", f"c=1 peer: {label}"] + ([f"peer streaming: {label}"] if streamed else [])
    for name in names:
        (row,) = [line for line in out.splitlines() if line.startswith(f"| {name} ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].replace(",", "")) > 0 and cells[7] == "0", row  # requests answered, no errors
    assert re.search(rf"side by side with {re.escape(label)} \(same upstream, same load, unique bodies\): the gateway "
                     r"[0-9,]+ req/s, the peer [0-9,]+ \([0-9.]+x\), CPU per request [0-9,]+ against [0-9,]+ us; "
                     r"added p50 at c=1: the gateway [0-9.]+ ms, the peer [0-9.]+ ms; p99 at c=1: ", out)


@pytest.mark.skipif(not node_available(), reason="Portkey's gateway needs Node.js and npm")
def test_a_quick_run_measures_portkey_beside_the_gateway():
    label = f"Portkey gateway {ensure_portkey()}"
    out = quick_run("portkey", "direct,miss,c1,peer")
    assert f"peer: {label}, Node v" in out
    peer_rows(out, label, streamed=False)
    assert f"{label}: streams not measured: Portkey {PORTKEY_VERSION} answers every stream 500" in out


@pytest.mark.skipif(installed_version(DEFAULT_VENV) is None,
                    reason=f"LiteLLM is not installed in {DEFAULT_VENV} (scripts/bench --peers litellm installs it)")
def test_a_quick_run_measures_litellm_beside_the_gateway():
    label = f"LiteLLM proxy {installed_version(DEFAULT_VENV)}"
    out = quick_run("litellm", "direct,miss,c1,stream,peer")
    assert f"peer: {label}, uvicorn" in out
    peer_rows(out, label, streamed=True)
    assert re.search(rf"time to first token p50: the gateway [0-9.]+ ms, {re.escape(label)} [0-9.]+ ms", out)


def test_the_peer_serves_the_slow_model_from_the_drip_upstream_when_given():
    """The streams-at-scale rows send the peer the same slow streams as the gateway."""
    config = yaml.safe_load(litellm_config("http://127.0.0.1:8099/v1", slow_base_url="http://127.0.0.1:8100/v1"))
    slow = config["model_list"][-1]
    assert slow["model_name"] == answers.SLOW_MODEL
    assert slow["litellm_params"]["model"] == f"openai/{answers.SLOW_MODEL}"
    assert slow["litellm_params"]["api_base"] == "http://127.0.0.1:8100/v1"
    assert [m["model_name"] for m in config["model_list"][:-1]] == [answers.OPENAI_MODEL, STREAM_MODEL]

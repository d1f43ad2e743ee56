"""The side-by-side peer (LiteLLM proxy): its config, its flags, and a real quick run where it is installed.

The real run needs LiteLLM's ~750 MB virtual environment, which
``scripts/bench.py --peers litellm`` makes on first use; the test suite does
not download it, so that test runs only where a benchmark has installed it.
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
from benchkit.peers import DEFAULT_VENV, STREAM_MODEL, installed_version, litellm_config

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


def test_peer_rows_need_a_peer():
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--only", "peer"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--only peer needs --peers litellm" in proc.stderr


@pytest.mark.skipif(installed_version(DEFAULT_VENV) is None,
                    reason=f"LiteLLM is not installed in {DEFAULT_VENV} (scripts/bench --peers litellm installs it)")
def test_a_quick_run_measures_litellm_beside_the_gateway():
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--only", "direct,miss,c1,stream,peer",
                           "--peers", "litellm"], cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    out = proc.stdout
    label = f"LiteLLM proxy {installed_version(DEFAULT_VENV)}"
    assert f"peer: {label}, uvicorn" in out
    for name in (f"peer: {label}, unique bodies", f"c=1 peer: {label}", f"peer streaming: {label}"):
        (row,) = [line for line in out.splitlines() if line.startswith(f"| {name} ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1].replace(",", "")) > 0 and cells[7] == "0", row  # requests answered, no errors
    assert f"side by side with {label} (same upstream, same load, unique bodies): the gateway " in out
    assert re.search(r"time to first token p50: the gateway [0-9.]+ ms, the peer [0-9.]+ ms", out)

"""A real 2-worker gateway with LLM_EDGE_PATCHES=false still serves: answers, streams, metrics summed on the master.

With every library patch off (app/patches/) gunicorn writes head and body apart, http.client parses headers
with the email package, and prometheus_client writes its own values and collects with its own collector.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import provider_env
from tests.e2e.test_metrics_live import CHAT, access_lines, chat, http
from tests.support.metrics import scrape, settled
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gw(emulator):
    gateway = GatewayProcess({**provider_env(emulator), "REQUEST_TIMEOUT": "20", "LLM_EDGE_PATCHES": "false"}).start()
    yield gateway
    gateway.stop()


def test_answers_and_streams_with_patches_off(gw, upstream):
    resp = chat(gw, "patches off")
    assert resp.status == 200, resp.data
    assert json.loads(resp.data)["choices"][0]["message"]["content"]
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "stream it"}]}
    resp = http.request("POST", gw.url + CHAT, body=json.dumps(body).encode(),
                        headers={"content-type": "application/json"})
    assert resp.status == 200
    text = resp.data.decode()
    assert text.count("data: ") > 2 and text.rstrip().endswith("data: [DONE]")
    assert "warning: library patches declined" not in gw.logs()


def test_metrics_are_summed_across_both_workers_with_patches_off(gw, upstream):
    before = scrape(gw.metrics_url)
    sent, pids, batch = 0, set(), 0
    deadline = time.monotonic() + 40  # until both workers have served some
    with ThreadPoolExecutor(8) as pool:
        while len(pids) < 2 and time.monotonic() < deadline:
            batch += 1
            statuses = [r.status for r in pool.map(lambda content: chat(gw, content),
                                                    [f"off {batch} {i}" for i in range(8)])]
            assert statuses == [200] * 8
            sent += 8
            pids = {e["pid"] for e in access_lines(gw) if e["endpoint"] == CHAT}
    assert len(pids) == 2, "every request went to one worker"
    after = settled(gw.metrics_url)
    labels = {"endpoint": CHAT, "provider": "openai", "model": "gpt-4o-mini", "status": "200"}
    assert after.total("llm_edge_requests_total", **labels) - before.total("llm_edge_requests_total", **labels) \
        == sent

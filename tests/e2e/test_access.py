"""Client keys against real gunicorn: both SDKs, 401s, keyless health and metrics, SIGHUP reloads."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path

import anthropic
import openai
import pytest
import urllib3
import yaml

from tests.conftest import provider_env
from tests.support.processes import ROOT, GatewayProcess, RedisServer, wait_until

pytestmark = pytest.mark.timeout(90)

ACME_KEY = "sk-edge-acme-e2e-key-000000000000001"
http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("access")
    clients = d / "clients.yaml"
    clients.write_text("# test clients\nclients:\n  - id: acme\n    tier: pro\n    key_sha256: "
                       + hashlib.sha256(ACME_KEY.encode()).hexdigest() + "\n")
    limits = d / "rate-limits.yaml"
    limits.write_text((ROOT / "config" / "rate-limits.yaml").read_text())
    return {"clients": clients, "limits": limits}


@pytest.fixture(scope="module")
def gw(emulator, files):
    redis_server = RedisServer().start()
    gateway = GatewayProcess({**provider_env(emulator), "REDIS_URL": redis_server.url,
                              "CLIENTS_FILE": str(files["clients"]), "RATE_LIMITS_FILE": str(files["limits"])}).start()
    yield gateway
    gateway.stop()
    redis_server.close()


def test_openai_sdk_with_its_key_is_served_and_sees_the_limit_headers(gw, upstream):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    assert raw.parse().choices[0].message.content == "Echo: hello there"
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert 0 <= int(raw.headers["x-ratelimit-remaining-requests"]) < 100
    assert raw.headers["x-ratelimit-reset-requests"].endswith(("ms", "s"))


def test_openai_sdk_with_a_wrong_key_gets_authentication_error(gw, upstream):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-edge-not-a-client", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert upstream.count() == 0, "a refused caller never reaches a provider"


def test_anthropic_sdk_by_x_api_key_and_by_bearer_token(gw, upstream):
    for client in (anthropic.Anthropic(base_url=gw.url, api_key=ACME_KEY, max_retries=0, timeout=10),
                   anthropic.Anthropic(base_url=gw.url, auth_token=ACME_KEY, max_retries=0, timeout=10)):
        msg = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=20,
                                     messages=[{"role": "user", "content": "hello there"}])
        assert msg.content[0].text == "Echo: hello there"


def test_anthropic_sdk_with_a_wrong_key_gets_its_own_error_shape(gw, upstream):
    client = anthropic.Anthropic(base_url=gw.url, api_key="sk-edge-not-a-client", max_retries=0, timeout=10)
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 401
    assert info.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": info.value.body["error"]["message"]}}
    assert upstream.count() == 0


def test_health_and_metrics_need_no_key(gw):
    for path in ("/health", "/health/live", "/health/ready"):
        assert http.request("GET", gw.url + path).status == 200, path
    resp = http.request("GET", gw.metrics_url)
    assert resp.status == 200 and b"llm_edge_requests_total" in resp.data
    body = json.loads(http.request("GET", gw.url + "/health").data)
    assert body["checks"]["rate_limits"] == {"status": "ok", "detail": {"mode": "redis"}}


def _replace_workers(gateway: GatewayProcess) -> None:
    """SIGHUP, then wait until every worker is a new one that answers."""
    old = set(gateway.worker_pids())
    gateway.signal(signal.SIGHUP)
    wait_until(lambda: len(gateway.worker_pids()) == 2 and not old & set(gateway.worker_pids()),
               timeout=30, what="new workers after SIGHUP")
    wait_until(lambda: http.request("GET", gateway.url + "/health/live").status == 200, what="new workers")


def _models(gateway: GatewayProcess, key: str) -> urllib3.BaseHTTPResponse:
    return http.request("GET", gateway.url + "/v1/models", headers={"authorization": f"Bearer {key}"})


def _status(gateway: GatewayProcess, key: str) -> int:
    return _models(gateway, key).status


def test_sighup_loads_new_clients_and_a_broken_file_keeps_the_last_good_ones(gw, files):
    original, original_limits = files["clients"].read_text(), files["limits"].read_text()
    try:
        added = subprocess.run([str(ROOT / "scripts" / "add-client"), "newco", "free", "--file", str(files["clients"])],
                               capture_output=True, text=True, timeout=30, check=True)
        new_key = added.stdout.strip()
        assert _status(gw, new_key) == 401, "not loaded before the reload"
        files["limits"].write_text(original_limits.replace("tier_pro: 100", "tier_pro: 7"))
        _replace_workers(gw)
        assert _status(gw, new_key) == 200
        assert _models(gw, ACME_KEY).headers["x-ratelimit-limit-requests"] == "7", "the rate limit file is reloaded too"

        files["clients"].write_text("clients: [ {id: broken, tier: nope, key_sha256: zz} ]\n")
        _replace_workers(gw)
        assert gw.proc.poll() is None, "a bad file on reload must not stop the gateway"
        assert _status(gw, new_key) == 200 and _status(gw, ACME_KEY) == 200
        assert "configuration error on reload, keeping the running configuration: CLIENTS_FILE" in gw.logs()

        files["clients"].write_text("clients: []\n")
        _replace_workers(gw)
        assert _status(gw, "anything") == 200, "no clients: open development mode"
        assert "the gateway is OPEN (development mode)" in gw.logs()
        assert http.request("GET", gw.url + "/v1/models").status == 200
    finally:
        files["clients"].write_text(original)
        files["limits"].write_text(original_limits)
        _replace_workers(gw)
    assert _status(gw, ACME_KEY) == 200 and _status(gw, "anything") == 401


def test_a_bad_clients_file_stops_start_up_with_one_line(emulator, tmp_path):
    bad = tmp_path / "clients.yaml"
    bad.write_text(yaml.safe_dump({"clients": [{"id": "acme", "tier": "pro", "key_sha256": ACME_KEY}]}))
    for env, fragment in (({"CLIENTS_FILE": str(bad)}, "key_sha256 must be 64 hex digits"),
                          ({"CLIENTS_FILE": str(tmp_path / "missing.yaml")}, "does not exist"),
                          ({"ANONYMOUS_TIER": "platinum"}, "ANONYMOUS_TIER: tier 'platinum'")):
        gateway = GatewayProcess({**provider_env(emulator), **env})
        gateway.start(wait=False)
        assert gateway.proc.wait(30) == 2
        lines = gateway.logs().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("llm-edge-agent: configuration error:") and fragment in lines[0]
        assert ACME_KEY not in gateway.logs(), "the error names the field, never the value that may be a key"

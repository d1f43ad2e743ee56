"""No key anywhere: right, wrong and failing requests at debug log level, then every output searched.

Provider keys here deliberately look like nothing (no ``sk-`` prefix a
pattern could catch), the providers quote them back in their errors, and
Redis needs a password: the gateway must hide them because it knows they
are secrets, not because they look like keys.
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import anthropic
import openai
import pytest
import urllib3
import yaml

from tests.conftest import Fault, emulator_module
from tests.support.processes import GatewayProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(120)

OPENAI_KEY = "0penaiProviderKey7d1e93ab52c84f06a1b2"
ANTHROPIC_KEY = "AnthropicProviderKey4c02e7f9d6b3a815e0"
REDIS_PASSWORD = "RedisPassw0rd5e8c1a7f3b9d2406"
CLIENT_KEYS = {"acme": "sk-edge-AcmeClientKey81c3f0e29ab74d65", "tiny": "sk-edge-TinyClientKey2f7a94c0d3e1b586"}
WRONG_KEYS = ["sk-edge-WrongClientKey6d2b0e9f4a7c8135", "PlainWrongKey93fe81a0c7d24b65"]
SECRETS = {"openai": OPENAI_KEY, "anthropic": ANTHROPIC_KEY, "redis": REDIS_PASSWORD,
           **{f"client {k}": v for k, v in CLIENT_KEYS.items()}, **{f"wrong {i}": k for i, k in enumerate(WRONG_KEYS)}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("secrets")
    (d / "clients.yaml").write_text(yaml.safe_dump({"clients": [
        {"id": "acme", "tier": "pro", "key_sha256": hashlib.sha256(CLIENT_KEYS["acme"].encode()).hexdigest()},
        {"id": "tiny", "tier": "tiny", "key_sha256": hashlib.sha256(CLIENT_KEYS["tiny"].encode()).hexdigest()}]}))
    (d / "limits.yaml").write_text(yaml.safe_dump({"rate_limiting": {"per_client": {
        "tier_pro": 1000, "tier_tiny": {"requests_per_second": 1, "tokens_per_minute": 10}}}}))
    (d / "anthropic.key").write_text(ANTHROPIC_KEY)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--requirepass", REDIS_PASSWORD, "--dir", str(d)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emu = emulator_module.Emulator(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY).start()
    gw = GatewayProcess({"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY_FILE": str(d / "anthropic.key"),
                         "OPENAI_BASE_URL": emu.openai_base_url, "ANTHROPIC_BASE_URL": emu.anthropic_base_url,
                         "REDIS_URL": f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{redis_port}",
                         "ENABLE_L2_CACHE": "true", "CLIENTS_FILE": str(d / "clients.yaml"),
                         "RATE_LIMITS_FILE": str(d / "limits.yaml"), "LOG_LEVEL": "debug",
                         "REQUEST_TIMEOUT": "2", "MAX_REQUEST_BYTES": "20000"}).start()
    yield gw, emu, redis
    gw.stop()
    emu.stop()
    if redis.poll() is None:
        redis.kill()
        redis.wait(5)


def test_no_key_in_logs_responses_health_or_metrics(world):
    gw, emu, redis = world
    seen: list[str] = []  # every byte a client or an operator gets to see

    def keep(resp: urllib3.BaseHTTPResponse) -> None:
        seen.append(json.dumps(dict(resp.headers)) + resp.data.decode("utf-8", "replace"))

    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))
    acme = CLIENT_KEYS["acme"]

    def post(path: str, body: object, key: str | None, header: str = "authorization", **kw) -> None:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers[header] = f"Bearer {key}" if header == "authorization" else key
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        keep(http.request("POST", gw.url + path, body=raw, headers=headers, **kw))

    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    msgs = {"model": "claude-3-5-haiku-latest", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}

    # The right keys, through the SDKs and by hand, plain and streamed, both providers from both dialects.
    oa = openai.OpenAI(base_url=gw.url + "/v1", api_key=acme, max_retries=0, timeout=10)
    raw = oa.chat.completions.with_raw_response.create(**chat)
    seen.append(json.dumps(dict(raw.headers)) + raw.text)
    seen.append("".join(c.model_dump_json() for c in oa.chat.completions.create(**chat, stream=True)))
    an = anthropic.Anthropic(base_url=gw.url, api_key=acme, max_retries=0, timeout=10)
    seen.append(an.messages.create(**msgs).model_dump_json())
    for path, body in (("/v1/chat/completions", {**chat, "model": "claude-3-5-haiku-latest"}),
                       ("/v1/messages", {**msgs, "model": "gpt-4o-mini", "stream": True})):
        post(path, body, acme)
        post(path, body, acme, header="x-api-key")

    # Wrong keys, missing keys, malformed headers, a key in the wrong place.
    for wrong in WRONG_KEYS:
        for path, body in (("/v1/chat/completions", chat), ("/v1/messages", msgs)):
            post(path, body, wrong)
            post(path, body, wrong, header="x-api-key")
        keep(http.request("GET", gw.url + "/v1/models", headers={"authorization": f"Basic {wrong}"}))
        keep(http.request("GET", gw.url + "/v1/models", headers={"authorization": wrong}))
    post("/v1/chat/completions", {**chat, "api_key": WRONG_KEYS[0]}, None)

    # Failing requests with the right key: bad bodies, too big, unknown model, limits hit.
    post("/v1/chat/completions", b"{not json " + acme.encode(), acme)
    post("/v1/messages", {**msgs, "max_tokens": "many"}, acme)
    post("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": "x" * 30000}]}, acme)
    for _ in range(3):
        post("/v1/messages", msgs, CLIENT_KEYS["tiny"], header="x-api-key")

    # Providers failing, and quoting the gateway's own keys back in their error messages.
    emu.reset()
    for status in (400, 401, 429, 500, 503):
        emu.push_faults(Fault(status=status, message=f"bad key {OPENAI_KEY} here"))
        post("/v1/chat/completions", chat, acme)
        emu.push_faults(Fault(status=status, message=f"bad key {ANTHROPIC_KEY} here"))
        post("/v1/messages", msgs, acme)
    emu.push_faults(Fault(error_after=2, message=f"mid-stream failure for {OPENAI_KEY}"))
    post("/v1/chat/completions", {**chat, "stream": True}, acme)
    emu.push_faults(Fault(error_after=1, message=f"mid-stream failure for {ANTHROPIC_KEY}"))
    post("/v1/messages", {**msgs, "stream": True}, acme)
    emu.push_faults(Fault(status=200, body={"error": {"message": f"200 with an error for {OPENAI_KEY}"}}))
    post("/v1/chat/completions", chat, acme)
    emu.push_faults(Fault(cut_after=2))
    post("/v1/messages", {**msgs, "stream": True}, acme)
    emu.push_faults(Fault(delay=3))
    post("/v1/chat/completions", chat, acme)
    emu.reset()

    # Redis gone: errors are logged and reported, its password is not.
    redis.kill()
    redis.wait(5)
    for i in range(5):  # new questions: the L2 lookup meets the dead Redis (a leased limit may not)
        post("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": f"redis gone {i}"}]}, acme)
    health = http.request("GET", gw.url + "/health")
    keep(health)
    assert json.loads(health.data)["status"] == "degraded"
    for path in ("/health/live", "/health/ready", "/v1/models"):
        keep(http.request("GET", gw.url + path, headers={"x-api-key": acme}))

    wait_until(lambda: "llm_edge_rate_limited_total{" in http.request("GET", gw.metrics_url).data.decode(),
               what="metrics")
    metrics = http.request("GET", gw.metrics_url).data.decode()
    # Each access line (with its error type) is written just after its answer's last byte: wait for them.
    wait_until(lambda: "rate_limit_exceeded" in gw.logs(), timeout=5, what="the 429s in the debug log")
    logs = gw.logs()
    assert '"level":"debug"' in logs and "rate_limit_exceeded" in logs, "debug logging was on and saw the 429s"
    outputs = {"gateway logs": logs, "responses": "\n".join(seen), "metrics": metrics}
    for where, text in outputs.items():
        for name, secret in SECRETS.items():
            for fragment in (secret, secret[4:20]):  # whole, or a telling piece of it
                i = text.find(fragment)
                assert i < 0, f"{name} key found in {where}: {text[max(0, i - 300):i + 60]}"

"""README's first command: scripts/serve on a machine with no provider keys and no Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile

import pytest
import urllib3

from tests.support.processes import ROOT, free_port, wait_until

pytestmark = pytest.mark.timeout(90)


def test_serve_without_keys_or_redis_answers_from_the_emulator():
    port, metrics_port, dead_redis = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(metrics_port),
                "WEB_CONCURRENCY": "2", "REDIS_URL": f"redis://127.0.0.1:{dead_redis}", "ENABLE_TRACING": "false"})
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=10))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http.request("GET", base + "/health").status == 200, timeout=60, what="serve")
        resp = http.request("POST", base + "/v1/chat/completions", headers={"content-type": "application/json"},
                            body=json.dumps({"model": "gpt-4o-mini",
                                             "messages": [{"role": "user", "content": "hi there"}]}))
        assert resp.status == 200, resp.data
        assert json.loads(resp.data)["choices"][0]["message"]["content"] == "Echo: hi there"
        resp = http.request("POST", base + "/v1/messages", headers={"content-type": "application/json"},
                            body=json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 20,
                                             "messages": [{"role": "user", "content": "hello"}]}))
        assert resp.status == 200 and json.loads(resp.data)["content"][0]["text"] == "Echo: hello"
        for model in ("claude-bedrock", "claude-vertex"):  # the emulator plays both clouds, signed / with tokens
            resp = http.request("POST", base + "/v1/messages", headers={"content-type": "application/json"},
                                body=json.dumps({"model": model, "max_tokens": 20, "stream": True,
                                                 "messages": [{"role": "user", "content": "cloud"}]}))
            assert resp.status == 200 and b'"text":"Echo:"' in resp.data and b"message_stop" in resp.data, resp.data
            assert resp.headers["x-llm-edge-provider"] == model.split("-")[1]
        for model, how in (("claude-3-5-haiku-latest", "exact"), ("gpt-4o-mini", "estimate")):
            body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
            resp = http.request("POST", base + "/v1/messages/count_tokens",
                                headers={"content-type": "application/json"}, body=json.dumps(body))
            assert resp.status == 200 and resp.headers["x-llm-edge-token-count"] == how, resp.data
            assert json.loads(resp.data)["input_tokens"] > 0
        # README's embeddings and models.retrieve examples.
        resp = http.request("POST", base + "/v1/embeddings", headers={"content-type": "application/json"},
                            body=json.dumps({"model": "text-embedding-3-small", "input": ["hello", "world"],
                                             "dimensions": 4}))
        assert resp.status == 200, resp.data
        assert [len(d["embedding"]) for d in json.loads(resp.data)["data"]] == [4, 4]
        resp = http.request("GET", base + "/v1/models/claude-3-5-haiku-latest")
        assert resp.status == 200 and json.loads(resp.data)["owned_by"] == "anthropic", resp.data
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert "LOCAL" in output and "EMULATOR" in output, output
    assert "unreachable" in output and "L1 cache" in output, output  # says Redis is missing
    assert proc.returncode == 0, output


def test_serve_with_a_bad_setting_says_one_line_and_exits_2():
    env = {**os.environ, "PORT": "eighty"}
    result = subprocess.run([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("bootstrap:")]
    assert result.returncode == 2, lines
    assert lines == ["llm-edge-agent: configuration error: PORT must be an integer from 0 to 65535, got 'eighty'"]


def test_serve_demos_azure_deployments_from_the_example_file(tmp_path):
    """config/examples/azure.yaml as documented: the emulator started by scripts/serve plays Azure."""
    port, metrics_port, emulator_port = free_port(), free_port(), free_port()
    models = tmp_path / "azure.yaml"
    models.write_text((ROOT / "config" / "examples" / "azure.yaml").read_text()
                      .replace("127.0.0.1:8099", f"127.0.0.1:{emulator_port}"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(metrics_port), "WEB_CONCURRENCY": "1",
                "EMULATOR_PORT": str(emulator_port), "MODELS_FILE": str(models), "ENABLE_TRACING": "false",
                "REDIS_URL": f"redis://127.0.0.1:{free_port()}"})
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(ROOT / "scripts" / "serve")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=10))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http.request("GET", base + "/health").status == 200, timeout=60, what="serve")
        for model, stream in (("gpt-4o", False), ("gpt-4o", True), ("gpt-4o-mini", False)):
            resp = http.request("POST", base + "/v1/chat/completions", headers={"content-type": "application/json"},
                                body=json.dumps({"model": model, "stream": stream,
                                                 "messages": [{"role": "user", "content": "hi azure"}]}))
            assert resp.status == 200, resp.data
            if stream:
                chunks = [json.loads(line[6:]) for line in resp.data.decode().splitlines()
                          if line.startswith("data: {")]
                text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            else:
                text = json.loads(resp.data)["choices"][0]["message"]["content"]
            assert text == "Echo: hi azure"
            assert resp.headers["x-llm-edge-provider"].startswith("azure-")
        health = json.loads(http.request("GET", base + "/health").data)
        assert set(health["checks"]["deployments"]["detail"]["models"]["gpt-4o"]["deployments"]) == {
            "east-1", "east-2", "west"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert proc.returncode == 0, output

"""Logs of a real gateway: JSON lines from gunicorn and the app, request ids, levels, prompts, SIGUSR1."""

from __future__ import annotations

import json
import signal
import time
import uuid

import openai
import pytest
import urllib3

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.processes import wait_until, whole_lines_of

pytestmark = pytest.mark.timeout(90)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=20))
PROMPT = "please summarise the quarterly figures"
CLIENT_KEY = "sk-client-key-that-must-never-be-logged"


def parse(text: str) -> list[dict]:
    """Every line must be one JSON object; a line that is not fails the test here."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(gw, request_id: str, content: str = PROMPT):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    return http.request("POST", gw.url + "/v1/chat/completions", body=json.dumps(body).encode(),
                        headers={"content-type": "application/json", "x-request-id": request_id,
                                 "authorization": f"Bearer {CLIENT_KEY}"})


def access(entries: list[dict], request_id: str) -> dict:
    (line,) = [e for e in entries if e["logger"] == "llm_edge.access" and e["request_id"] == request_id]
    return line


def test_every_line_is_json_and_the_access_line_has_every_field(gateway, upstream):
    request_id = f"req-{uuid.uuid4().hex}"
    resp = chat(gateway, request_id)
    assert resp.status == 200 and resp.headers["x-request-id"] == request_id
    usage = json.loads(resp.data)["usage"]
    wait_until(lambda: request_id in gateway.logs(), timeout=5, what="the access line")
    entries = parse(gateway.logs())
    line = access(entries, request_id)
    assert line["level"] == "info" and line["msg"] == "request"
    assert {k: line[k] for k in ("client_id", "endpoint", "provider", "model", "status", "cache", "stream")} == {
        "client_id": "anonymous", "endpoint": "/v1/chat/completions", "provider": "openai",
        "model": "gpt-4o-mini", "status": 200, "cache": "miss", "stream": False}
    assert line["prompt_tokens"] == usage["prompt_tokens"]
    assert line["completion_tokens"] == usage["completion_tokens"]
    assert line["cost_cents"] > 0 and line["duration_ms"] > 0 and line["attempts"] == 1
    assert "prompt" not in line  # LOG_PROMPTS is off by default
    # gunicorn's own lines, from the master and the workers, in the same format (a worker may still be
    # booting when the gateway first answers: wait for every process's).
    def gunicorn_pids() -> set[int]:
        return {e["pid"] for e in parse(gateway.logs()) if e["logger"] == "gunicorn.error"}
    wait_until(lambda: len(gunicorn_pids()) >= 3, timeout=5, what="lines from the master and both workers")
    gunicorn = [e for e in parse(gateway.logs()) if e["logger"] == "gunicorn.error"]
    assert any(e["msg"].startswith("Booting worker") for e in gunicorn)
    assert any(e["msg"].startswith("Listening at") for e in gunicorn)
    assert len({e["pid"] for e in gunicorn}) >= 3  # master and two workers
    text = gateway.logs()
    for secret in (PROMPT, CLIENT_KEY, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in text


def test_a_generated_request_id_is_the_one_in_the_log(gateway, upstream):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(
        model="claude-3-5-haiku-latest", stream=True, messages=[{"role": "user", "content": "hi"}])
    for _ in raw.parse():
        pass
    request_id = raw.headers["x-request-id"]
    wait_until(lambda: request_id in gateway.logs(), timeout=5, what="the stream's access line")
    line = access(parse(gateway.logs()), request_id)
    assert line["stream"] is True and line["provider"] == "anthropic" and line["status"] == 200


def test_log_prompts_adds_the_prompt_and_warning_level_drops_info(start_gateway, upstream):
    loud = start_gateway({"LOG_PROMPTS": "true"})
    request_id = f"req-{uuid.uuid4().hex}"
    assert chat(loud, request_id).status == 200
    wait_until(lambda: request_id in loud.logs(), timeout=5, what="the access line")
    assert access(parse(loud.logs()), request_id)["prompt"] == f"user: {PROMPT}"
    request_id = f"req-{uuid.uuid4().hex}"
    embed = http.request("POST", loud.url + "/v1/embeddings", headers={"content-type": "application/json",
                                                                        "x-request-id": request_id},
                         body=json.dumps({"model": "text-embedding-3-small", "input": [PROMPT, "second"]}).encode())
    assert embed.status == 200
    wait_until(lambda: request_id in loud.logs(), timeout=5, what="the embeddings access line")
    line = access(parse(loud.logs()), request_id)
    assert line["prompt"] == f"{PROMPT}\nsecond" and line["endpoint"] == "/v1/embeddings"
    assert line["prompt_tokens"] == json.loads(embed.data)["usage"]["prompt_tokens"] and line["cost_cents"] > 0

    quiet = start_gateway({"LOG_LEVEL": "warning"})
    assert chat(quiet, "req-quiet").status == 200
    entries = parse(quiet.logs())
    assert entries == [] or all(e["level"] in ("warning", "error", "critical") for e in entries)
    assert "req-quiet" not in quiet.logs()


def test_rust_log_is_an_alias_and_sigusr1_reopens_the_log_file(start_gateway, upstream, tmp_path):
    log_file = tmp_path / "gateway.log"
    gw = start_gateway({"LOG_FILE": str(log_file), "LOG_LEVEL": "", "RUST_LOG": "debug,hyper=warn"})
    assert chat(gw, "req-before").status == 200
    wait_until(lambda: "req-before" in whole_lines_of(log_file.read_text()), timeout=5, what="the first access line")
    entries = parse(whole_lines_of(log_file.read_text()))
    assert any(e["level"] == "debug" for e in entries)  # RUST_LOG's level counts
    assert not gw.logs().strip()  # nothing on stderr: it all went to the file

    rotated = tmp_path / "gateway.log.1"
    log_file.rename(rotated)  # what logrotate does
    gw.signal(signal.SIGUSR1)
    wait_until(log_file.exists, timeout=5, what="the master to reopen the log file")
    time.sleep(0.5)  # the master forwards SIGUSR1 to the workers; let them handle it
    ids = [f"req-after-{i}" for i in range(8)]
    for request_id in ids:
        assert chat(gw, request_id).status == 200
    wait_until(lambda: all(i in whole_lines_of(log_file.read_text()) for i in ids), timeout=5,
               what="lines in the new file")
    old = whole_lines_of(rotated.read_text())
    assert "req-before" in old and not any(i in old for i in ids)
    parse(whole_lines_of(log_file.read_text()))

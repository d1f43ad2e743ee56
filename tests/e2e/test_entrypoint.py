"""What the Docker image runs, as a plain process: docker/entrypoint.sh with the image's environment.

There is no Docker engine on our machines, so the image's entrypoint is run
directly from the repository (as the image runs it from /app), with the
environment the Dockerfile sets, provider keys given as files (Docker and
Kubernetes secrets), and the real gunicorn from the virtual environment.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import urllib3

from tests.conftest import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.processes import ROOT, VENV_BIN, free_port, wait_until

pytestmark = pytest.mark.timeout(90)


def dockerfile_env() -> dict[str, str]:
    """The ENV instruction of the runtime stage, as the image sets it."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    runtime = text[text.rindex("FROM "):]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", runtime, re.MULTILINE):
        for name, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block):
            env[name] = value
    return env


def test_entrypoint_serves_health_and_metrics_with_the_images_environment(emulator, tmp_path):
    image_env = dockerfile_env()
    assert image_env["PORT"] == "8080" and image_env["METRICS_PORT"] == "9090"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "openai").write_text(OPENAI_KEY + "\n")
    (secrets / "anthropic").write_text(ANTHROPIC_KEY + "\n")
    port, metrics_port = free_port(), free_port()
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        **image_env,
        # Free ports instead of the image's 8080/9090, which may be taken on this machine.
        "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "WEB_CONCURRENCY": "2", "ENABLE_TRACING": "false", "REDIS_URL": f"redis://127.0.0.1:{free_port()}",
        "OPENAI_API_KEY_FILE": str(secrets / "openai"), "ANTHROPIC_API_KEY_FILE": str(secrets / "anthropic"),
        "OPENAI_BASE_URL": emulator.openai_base_url, "ANTHROPIC_BASE_URL": emulator.anthropic_base_url,
    }
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(["/bin/sh", str(ROOT / "docker" / "entrypoint.sh")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=10))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http.request("GET", base + "/health").status == 200, timeout=40, what="entrypoint")
        health = json.loads(http.request("GET", base + "/health").data)
        assert health["status"] == "degraded"  # the Redis it was given is down, and it says so
        resp = http.request("POST", base + "/v1/messages", headers={"content-type": "application/json"},
                            body=json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 20,
                                             "messages": [{"role": "user", "content": "from the image"}]}))
        assert resp.status == 200 and json.loads(resp.data)["content"][0]["text"] == "Echo: from the image"
        assert emulator.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY  # read from the secret file
        metrics = http.request("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.status == 200 and b"llm_edge_requests_total" in metrics.data
        assert Path(env["PROMETHEUS_MULTIPROC_DIR"]).is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # exec'd: the gunicorn master itself gets the signal
        proc.wait(30)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert "OPENAI_API_KEY read from OPENAI_API_KEY_FILE" in output, output
    assert OPENAI_KEY not in output and ANTHROPIC_KEY not in output
    assert proc.returncode == 0, output


@pytest.mark.parametrize(("env", "line"), [
    ({"OPENAI_API_KEY": "sk-plain", "OPENAI_API_KEY_FILE": "{tmp}/openai"},
     "OPENAI_API_KEY and OPENAI_API_KEY_FILE are both set; set only one"),
    ({"REDIS_URL": "redis://127.0.0.1:1", "REDIS_URL_FILE": "{tmp}/redis"},
     "REDIS_URL and REDIS_URL_FILE are both set; set only one"),
    ({"ANTHROPIC_API_KEY_FILE": "{tmp}/missing"},
     "ANTHROPIC_API_KEY_FILE: cannot read '{tmp}/missing' (No such file or directory)"),
    ({"OPENAI_API_KEY_FILE": "{tmp}/empty"}, "OPENAI_API_KEY_FILE: '{tmp}/empty' is empty"),
    ({"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY must be an integer from 1 to 256, got 'many'"),
    ({"FORWARDED_ALLOW_IPS": "lb.internal"},
     "FORWARDED_ALLOW_IPS must be a comma-separated list of IP addresses or networks, or *, got 'lb.internal'"),
    ({"PROMETHEUS_MULTIPROC_DIR": "/proc/llm-edge-metrics"},
     "PROMETHEUS_MULTIPROC_DIR: cannot make a metrics folder in '/proc/llm-edge-metrics'"),
])
def test_a_bad_secret_or_metrics_folder_stops_the_image_with_one_line(tmp_path, env, line):
    """The *_FILE rule and the metrics folder are the settings' (one mechanism), reached through the image's
    entrypoint and the real gunicorn: one line naming the variable, exit 2, no worker started."""
    (tmp_path / "openai").write_text("sk-from-file\n")
    (tmp_path / "redis").write_text("redis://default:pw@127.0.0.1:1\n")
    (tmp_path / "empty").write_text("\n")
    full_env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), **dockerfile_env(),
                "HOST": "127.0.0.1", "PORT": str(free_port()), "METRICS_PORT": str(free_port()),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "ENABLE_TRACING": "false",
                **{k: v.format(tmp=tmp_path) for k, v in env.items()}}
    result = subprocess.run(["/bin/sh", str(ROOT / "docker" / "entrypoint.sh")], cwd=ROOT, env=full_env,
                            capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert output == f"llm-edge-agent: configuration error: {line.format(tmp=tmp_path)}" or (
        line.startswith("PROMETHEUS") and output.startswith(f"llm-edge-agent: configuration error: {line}")
        and "\n" not in output), output
    assert "sk-from-file" not in output and "pw@" not in output

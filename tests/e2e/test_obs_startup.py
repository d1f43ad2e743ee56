"""Start-up of the observability parts: bad settings stop the master with one line; a busy metrics
port does not stop the gateway, and metrics come up once the port is free."""

from __future__ import annotations

import socket
import time

import pytest
import urllib3

from tests.support.processes import GatewayProcess, wait_until

pytestmark = pytest.mark.timeout(60)

http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=5))


@pytest.mark.parametrize(("env", "line"), [
    ({"PRICING_FILE": "{bad}"}, "configuration error: PRICING_FILE: models.gpt-4o.output must be a number"),
    ({"LOG_FILE": "/nonexistent-folder/gateway.log"}, "configuration error: LOG_FILE: cannot write in the folder"),
    ({"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"},
     "configuration error: OTEL_BSP_MAX_EXPORT_BATCH_SIZE (20) must not exceed OTEL_BSP_MAX_QUEUE_SIZE (10)"),
])
def test_bad_observability_settings_stop_start_up_with_one_line(tmp_path, env, line):
    if env.get("PRICING_FILE") == "{bad}":
        bad = tmp_path / "pricing.yaml"
        bad.write_text("models:\n  gpt-4o: {input: 2.5, output: -10}\n")
        env = {"PRICING_FILE": str(bad)}
    gw = GatewayProcess(env).start(wait=False)
    assert gw.proc is not None and gw.proc.wait(30) == 2
    lines = gw.logs().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"llm-edge-agent: {line}"), lines


def test_a_busy_metrics_port_does_not_stop_the_gateway():
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    gw = GatewayProcess({"METRICS_PORT": str(port)})
    gw.metrics_port = port
    try:
        gw.start(wait=False)
        wait_until(lambda: http.request("GET", gw.url + "/health/live").status == 200, timeout=30, what="API up")
        wait_until(lambda: "cannot listen on" in gw.logs(), timeout=10, what="the metrics error line")
        squatter.close()
        wait_until(lambda: http.request("GET", gw.metrics_url).status == 200, timeout=15, what="metrics after retry")
        assert b"llm_edge_in_flight_requests" in http.request("GET", gw.metrics_url).data
    finally:
        squatter.close()
        gw.stop()


def test_tracing_to_the_default_endpoint_is_said_once_by_the_master_not_per_worker(emulator):
    """Outside docker-compose the default OTLP_ENDPOINT (http://jaeger:4317) does not answer: one line says so,
    from the master; the workers' failed exports are debug lines. A chosen endpoint still warns (test_tracing)."""
    from tests.conftest import provider_env

    gw = GatewayProcess({**provider_env(emulator), "ENABLE_TRACING": "true", "OTEL_BSP_SCHEDULE_DELAY": "50",
                         "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}).start()
    try:
        for _ in range(4):  # spans in both workers, most likely
            assert http.request("POST", gw.url + "/v1/chat/completions", json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status == 200
        wait_until(lambda: "llm_edge.access" in gw.logs(), what="the access lines")
        time.sleep(2)  # the batch processors' exports (every 50 ms, each failing within 1 s) have run
        logs = gw.logs()
        said = [line for line in logs.splitlines() if "OTLP_ENDPOINT is not set" in line]
        assert len(said) == 1 and '"level":"warning"' in said[0], said
        assert "cannot export spans" not in logs, "a worker warned about the default endpoint"
    finally:
        gw.stop()

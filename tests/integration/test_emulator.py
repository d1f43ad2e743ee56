"""The emulator beyond the two APIs: routing, faults, the control API, recording, transport and the CLI.

Why: the gateway's resilience tests inject their failures through these faults; if a fault does not do
what it says, those tests prove nothing. Per-API behaviour: test_emulator_openai.py, _anthropic.py.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.integration.emulator_support import (
    AN,
    OA,
    OPENAI_KEY,
    SCRIPT,
    Emulator,
    Fault,
    an,
    an_body,
    call,
    cleared,
    oa,
    oa_body,
    parse_sse,
    serving,
)

pytestmark = pytest.mark.timeout(30)

emu_server = pytest.fixture(scope="module")(serving)
emu = pytest.fixture(cleared)


# -------------------------------------------------------------------------------------------- routing


def test_unknown_path_and_wrong_method(emu: Any) -> None:
    status, _, raw = call(emu, "POST", "/v1/v1/chat/completions", oa_body(), OA)
    assert status == 404 and "Invalid URL" in json.loads(raw)["error"]["message"]
    status, _, raw = call(emu, "GET", "/v1/chat/completions", headers=OA)
    assert status == 405
    status, _, raw = call(emu, "GET", "/v1/messages", headers=AN)
    assert status == 405 and json.loads(raw)["type"] == "error"



# --------------------------------------------------------------------------------------------- faults


def test_status_fault_in_openai_shape_with_retry_after_then_recovers(emu: Any) -> None:
    emu.push_faults(Fault(status=429, retry_after=2))
    status, headers, raw = oa(emu, oa_body())
    assert status == 429 and headers["retry-after"] == "2"
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "rate_limit_exceeded"
    assert oa(emu, oa_body())[0] == 200


def test_status_fault_in_anthropic_shape(emu: Any) -> None:
    emu.push_faults(Fault(status=529, message="busy"))
    status, _, raw = an(emu, an_body())
    assert status == 529
    assert json.loads(raw) == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_faults_are_fifo_one_per_request(emu: Any) -> None:
    emu.push_faults(Fault(status=500), Fault(status=503))
    assert [oa(emu, oa_body())[0] for _ in range(3)] == [500, 503, 200]


def test_path_scoped_fault_skips_other_paths(emu: Any) -> None:
    emu.push_faults(Fault(status=500), path="/v1/messages")
    assert oa(emu, oa_body())[0] == 200
    assert an(emu, an_body())[0] == 500
    assert an(emu, an_body())[0] == 200


def test_default_fault_is_permanent_until_cleared(emu: Any) -> None:
    emu.set_default_fault(Fault(status=500), path="/v1/chat")
    assert [oa(emu, oa_body())[0] for _ in range(3)] == [500, 500, 500]
    assert an(emu, an_body())[0] == 200
    emu.push_faults(Fault(status=429))  # a queued fault wins over the default
    assert oa(emu, oa_body())[0] == 429
    emu.set_default_fault(None, path="/v1/chat")
    assert oa(emu, oa_body())[0] == 200


def test_fault_body_and_headers_override(emu: Any) -> None:
    emu.push_faults(Fault(status=502, body="<html>bad gateway</html>", headers={"x-extra": "1"}))
    status, headers, raw = oa(emu, oa_body())
    assert (status, raw, headers["x-extra"]) == (502, b"<html>bad gateway</html>", "1")


@pytest.mark.parametrize(
    ("kind", "ctype"),
    [("text", "application/json"), (True, "application/json"), ("html", "text/html; charset=utf-8")],
)
def test_garbage_fault_non_json(emu: Any, kind: Any, ctype: str) -> None:
    emu.push_faults(Fault(garbage=kind))
    status, headers, raw = oa(emu, oa_body())
    assert status == 200 and headers["content-type"] == ctype
    with pytest.raises(ValueError):
        json.loads(raw)


def test_garbage_fault_wrong_shape_json_and_stream(emu: Any) -> None:
    emu.push_faults(Fault(garbage="json"), Fault(garbage="text"))
    status, _, raw = an(emu, an_body())
    assert status == 200 and "content" not in json.loads(raw)
    status, headers, raw = an(emu, an_body(stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    assert events and all(name == "message_start" for name, _ in events)
    with pytest.raises(ValueError):
        json.loads(events[0][1])


def test_delay_fault_slows_first_byte(emu: Any) -> None:
    emu.push_faults(Fault(delay=0.3))
    started = time.monotonic()
    status, _, _ = oa(emu, oa_body())
    assert status == 200 and time.monotonic() - started >= 0.3
    with pytest.raises(TimeoutError):
        emu.push_faults(Fault(delay=1.0))
        oa(emu, oa_body(), timeout=0.2)


def test_drip_fault_spaces_stream_events(emu: Any) -> None:
    emu.push_faults(Fault(drip=0.05))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/messages", json.dumps(an_body(stream=True)), AN)
    started = time.monotonic()
    resp = conn.getresponse()
    first_byte = time.monotonic() - started
    raw = resp.read()
    elapsed = time.monotonic() - started
    conn.close()
    events = parse_sse(raw)
    assert events[-1][0] == "message_stop"
    assert first_byte < 0.5 * (len(events) - 1) * 0.05
    assert elapsed >= (len(events) - 1) * 0.05


def test_drip_fault_on_json_body(emu: Any) -> None:
    emu.push_faults(Fault(drip=0.1))
    started = time.monotonic()
    status, _, raw = oa(emu, oa_body())
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "Echo: hello big world"
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("cut", [0, 2, 5])
def test_cut_after_stream_closes_without_terminal_event(emu: Any, cut: int) -> None:
    emu.push_faults(Fault(cut_after=cut))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", json.dumps(oa_body(stream=True)), OA)
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    conn.close()
    events = parse_sse(info.value.partial)
    assert len(events) == cut
    assert all(data != "[DONE]" for _, data in events)


def test_cut_after_json_sends_partial_body(emu: Any) -> None:
    emu.push_faults(Fault(cut_after=10))
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("POST", "/v1/messages", json.dumps(an_body()), AN)
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("content-length")) > 10
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    conn.close()
    assert len(info.value.partial) == 10


def test_error_after_ends_stream_with_error_event(emu: Any) -> None:
    emu.push_faults(Fault(error_after=3), Fault(error_after=2, message="boom"))
    _, _, raw = an(emu, an_body(stream=True))
    events = parse_sse(raw)
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "error"]
    assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"
    _, _, raw = oa(emu, oa_body(stream=True))
    events = parse_sse(raw)
    assert len(events) == 3 and json.loads(events[-1][1])["error"]["message"] == "boom"


def test_hang_fault_never_answers_until_stopped() -> None:
    emu = Emulator().start()
    try:
        emu.push_faults(Fault(hang=True))
        with pytest.raises(TimeoutError):
            oa(emu, oa_body(), headers={}, timeout=0.3)
        assert emu.count("/v1/chat/completions") == 1
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        emu.push_faults(Fault(hang=True))
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), {})
        result: list[BaseException | int] = []

        def read() -> None:
            try:
                result.append(conn.getresponse().status)
            except BaseException as exc:  # the connection is closed by stop()
                result.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.2)
        assert result == []
        started = time.monotonic()
        emu.stop()
        reader.join(3)
        assert time.monotonic() - started < 3
        assert len(result) == 1 and isinstance(result[0], (http.client.RemoteDisconnected, ConnectionError))
    finally:
        emu.stop()


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(garbage="nope")
    with pytest.raises(ValueError):
        Fault(delay=-1)
    with pytest.raises(ValueError, match="stauts"):
        Fault.from_dict({"stauts": 500})
    assert Fault.from_dict({"status": 500, "retry_after": 1}).to_dict() == {"status": 500, "retry_after": 1}


# ---------------------------------------------------------------------------------------- control API


def test_control_api_faults_requests_and_reset(emu: Any) -> None:
    status, _, raw = call(
        emu,
        "POST",
        "/_emulator/faults?path=/v1/messages",
        [{"status": 500}, {"status": 503, "retry_after": 1}],
    )
    assert status == 200 and json.loads(raw) == {"queued": 2}
    assert oa(emu, oa_body())[0] == 200
    assert an(emu, an_body())[0] == 500
    _, _, raw = call(emu, "GET", "/_emulator/faults")
    assert json.loads(raw)["queued"] == [{"path": "/v1/messages", "fault": {"status": 503, "retry_after": 1}}]
    status, _, _ = call(emu, "DELETE", "/_emulator/faults")
    assert status == 200 and an(emu, an_body())[0] == 200

    _, _, raw = call(emu, "GET", "/_emulator/requests")
    listed = json.loads(raw)
    assert listed["count"] == 3 and len(listed["requests"]) == 3
    first = listed["requests"][0]
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["body"]["messages"][0]["content"] == "hello big world"
    assert first["headers"]["authorization"] == f"Bearer {OPENAI_KEY}" and first["status"] == 200
    assert listed["requests"][1]["status"] == 500 and listed["requests"][1]["fault"] == {"status": 500}
    _, _, raw = call(emu, "GET", "/_emulator/requests?path=/v1/messages")
    assert json.loads(raw)["count"] == 2

    status, _, _ = call(emu, "POST", "/_emulator/reset")
    assert status == 200 and emu.count() == 0 and emu.requests == []


def test_control_api_default_fault_object_form(emu: Any) -> None:
    status, _, _ = call(emu, "POST", "/_emulator/faults", {"default": {"status": 500}, "path": "/v1/chat"})
    assert status == 200
    assert [oa(emu, oa_body())[0] for _ in range(2)] == [500, 500]
    assert an(emu, an_body())[0] == 200
    call(emu, "DELETE", "/_emulator/faults")
    assert oa(emu, oa_body())[0] == 200


@pytest.mark.parametrize("payload", [[{"stauts": 500}], {"faultz": []}, "nope", [{"garbage": "maybe"}]])
def test_control_api_rejects_bad_faults(emu: Any, payload: Any) -> None:
    status, _, raw = call(emu, "POST", "/_emulator/faults", payload)
    assert status == 400 and "error" in json.loads(raw)
    assert emu.fault_state() == {"queued": [], "defaults": []}


def test_control_requests_are_not_recorded_or_faulted(emu: Any) -> None:
    emu.set_default_fault(Fault(status=500))
    assert call(emu, "GET", "/_emulator/health")[0] == 200
    assert emu.count() == 0


# ------------------------------------------------------------------------------ recording and transport


def test_recording_captures_method_path_headers_body(emu: Any) -> None:
    an(emu, an_body("recorded"), headers={**AN, "traceparent": "00-abc-def-01"})
    rec = emu.last("/v1/messages")
    assert rec is not None and rec is emu.requests[-1]
    assert (rec.method, rec.path, rec["method"]) == ("POST", "/v1/messages", "POST")
    assert rec.headers["traceparent"] == "00-abc-def-01" and rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.body["messages"][0]["content"] == "recorded" and rec.status == 200
    assert emu.count("/v1/messages") == 1 and emu.count("/v1/chat") == 0


def test_record_false_keeps_counts_only() -> None:
    with Emulator(record=False) as emu:
        assert oa(emu, oa_body(), headers={})[0] == 200
        assert emu.requests == [] and emu.count() == 1


def test_keep_alive_serves_two_requests_on_one_connection(emu: Any) -> None:
    before = emu.connections
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), OA)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
        sock = conn.sock
        conn.request("POST", "/v1/messages", json.dumps(an_body(stream=True)), AN)
        resp = conn.getresponse()
        assert resp.status == 200 and parse_sse(resp.read())[-1][0] == "message_stop"
        assert conn.sock is sock
        conn.request("GET", "/v1/models", headers=OA)
        assert conn.getresponse().read()
        assert conn.sock is sock
    finally:
        conn.close()
    assert emu.connections - before == 1


def test_chunked_request_body_is_accepted(emu: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        data = json.dumps(oa_body("chunked body")).encode()
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=iter([data[:10], data[10:]]),
            headers={**OA, "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == "Echo: chunked body"
    finally:
        conn.close()


def test_restart_on_same_port_and_stop_closes_idle_connections() -> None:
    emu = Emulator().start()
    port = emu.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/v1/models")
    assert conn.getresponse().read()
    emu.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    emu.start()
    try:
        assert emu.port == port and oa(emu, oa_body(), headers={})[0] == 200
    finally:
        emu.stop()
        conn.close()


@pytest.mark.parametrize(
    "command",
    [[str(SCRIPT)], ["-m", "emulator"]],  # the package directory (scripts/serve), or the module from scripts/
    ids=["directory", "module"],
)
def test_cli_prints_url_serves_and_exits_on_sigterm(command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, *command, "--host", "127.0.0.1", "--port", "0", "--openai-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=SCRIPT.parent,
    )
    try:
        line: list[str] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(10)
        assert line and line[0].startswith("EMULATOR LISTENING http://127.0.0.1:"), line
        port = int(line[0].strip().rsplit(":", 1)[1])
        assert port > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/chat/completions", json.dumps(oa_body()), {"Authorization": "Bearer k"})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

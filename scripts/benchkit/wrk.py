"""wrk driven by generated Lua: fixed or per-request unique POST bodies, results as one JSON line.

wrk itself cannot vary a body, so the miss path uses a Lua ``request()`` that
puts a counter (and a per-run nonce, and the wrk thread number) into the
prompt: every request is a new cache key. ``done()`` prints the latency
percentiles and error counts as JSON, so nothing parses wrk's human text.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

from benchkit.procs import CpuSample, pinned

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%.1f,"p90":%.1f,"p99":%.1f,"max":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def lua_script(path: str, headers: dict[str, str], body: bytes | None = None,
               template: tuple[str, str] | None = None) -> str:
    """A wrk script that POSTs ``body`` every time, or ``template`` with a unique prompt per request."""
    lines = ['wrk.method = "POST"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    if template is None:
        assert body is not None
        lines.append(f"wrk.body = {_lua_string(body.decode())}")
        lines.append(f"wrk.path = {_lua_string(path)}")
    else:
        head, tail = template
        nonce = uuid.uuid4().hex[:12]
        lines += [
            "local thread_no = 0",
            "local counter = 0",
            "setup = function(thread) thread_no = thread_no + 1; thread:set('thread_no', thread_no) end",
            f"local head, tail, nonce = {_lua_string(head)}, {_lua_string(tail)}, '{nonce}'",
            "request = function()",
            "  counter = counter + 1",
            "  local body = head .. 'unique prompt ' .. nonce .. '-' .. (thread_no or 0) .. '-' .. counter .. tail",
            f"  return wrk.format(nil, {_lua_string(path)}, nil, body)",
            "end",
        ]
    return "\n".join(lines) + "\n" + _DONE


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, script: str, *, connections: int, duration: float, timeout: float = 10.0) -> WrkResult:
    """One bounded wrk run, pinned to the load core."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="llm-edge-bench-") as f:
        f.write(script)
        f.flush()
        seconds = max(1, round(duration))
        cmd = pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout:g}s", "-s", f.name,
                      url])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout + 30)
    for line in proc.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            r = json.loads(line.split(" ", 1)[1])
            errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
            return WrkResult(requests=r["requests"], seconds=r["duration_us"] / 1e6, errors=errors,
                             p50_ms=r["p50"] / 1000, p90_ms=r["p90"] / 1000, p99_ms=r["p99"] / 1000)
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def timed_run(url: str, script: str, root_pid: int, *, connections: int, duration: float) -> tuple[WrkResult, float]:
    """``run``, and the CPU microseconds ``root_pid`` and its children spent meanwhile (the server's side)."""
    before = CpuSample.take(root_pid)
    result = run(url, script, connections=connections, duration=duration)
    return result, CpuSample.take(root_pid).micros_since(before)

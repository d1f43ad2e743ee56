"""A fast local upstream: nginx answering fixed OpenAI and Anthropic bodies, JSON or SSE, and embeddings.

nginx cannot branch on the request body, but the gateway asks for a stream
with ``accept: text/event-stream``, so that header picks SSE over JSON. The
answers are baked into a generated config with ``return 200 '...'`` (which,
unlike static files, answers POST). nginx runs one worker pinned to the load
core, so the upstream costs the gateway's cores nothing.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from benchkit import answers
from benchkit.procs import Managed, free_port, pinned, wait_until
from benchkit.upstream import LocalUpstream


def _quote(body: bytes) -> str:
    """An nginx single-quoted string holding ``body`` exactly."""
    text = body.decode()
    if "$" in text:
        raise ValueError("nginx would expand '$' in a return body")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _endpoint(path: str, name: str, json_body: bytes, sse_body: bytes) -> str:
    return f"""
        location = {path} {{
            if ($http_accept ~* event-stream) {{ rewrite ^ /_sse/{name} last; }}
            default_type application/json;
            return 200 {_quote(json_body)};
        }}
        location = /_sse/{name} {{
            internal;
            default_type text/event-stream;
            return 200 {_quote(sse_body)};
        }}"""


def config(port: int, workdir: Path) -> str:
    openai = _endpoint("/v1/chat/completions", "openai", answers.openai_json(),
                       b"".join(answers.openai_sse_events()))
    anthropic = _endpoint("/v1/messages", "anthropic", answers.anthropic_json(),
                          b"".join(answers.anthropic_sse_events()))
    embeddings = f"""
        location = /v1/embeddings {{
            default_type application/json;
            return 200 {_quote(answers.embeddings_json())};
        }}"""
    temp = "\n".join(f"    {kind}_temp_path {workdir}/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
{temp}
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_max_body_size 16m;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {openai}
        {anthropic}
        {embeddings}
        location / {{ return 404; }}
    }}
}}
"""


def available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


class NginxUpstream(LocalUpstream):
    kind = "nginx"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="llm-edge-bench-nginx-"))
        (self.dir / "nginx.conf").write_text(config(self.port, self.dir))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = Managed("nginx", pinned([binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                                             "-c", str(self.dir / "nginx.conf")]))
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> NginxUpstream:
        self.proc.start()

        def up() -> bool:
            self.proc.check_alive()
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        wait_until(up, timeout=10, what="nginx")
        return self

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

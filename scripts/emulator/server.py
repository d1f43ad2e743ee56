"""The HTTP side: a threaded server, the per-connection handler that routes to the APIs, and :class:`Emulator`.

The handler reads a request, lets the emulator count, record and pick a fault for it, applies the fault
(hang, delay, status, garbage), routes it to the API it belongs to, and writes the reply, dripped or cut
as the fault says. Control endpoints under ``/_emulator/`` drive faults and recordings over HTTP.
"""

from __future__ import annotations

import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import anthropic, azure, bedrock, embeddings, openai, responses, vertex
from .faults import (
    HTML_PAGE,
    Fault,
    FaultBook,
    as_fault,
    garbage_data,
    reply_headers,
    script_events,
    status_payload,
    with_usage,
)
from .recording import RecordedRequest, Recordings
from .wire import ApiError, dumps, fragments, loads, new_id

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "o3-mini",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
CONTROL_PREFIX = "/_emulator"

Endpoint = Callable[[Any, bool], "dict[str, Any] | list[bytes]"]

# path -> (method, the API's handler of the parsed body and the stream flag)
ENDPOINTS: dict[str, tuple[str, Endpoint]] = {
    "/v1/chat/completions": ("POST", openai.chat),
    "/v1/messages": ("POST", anthropic.messages),
    "/v1/messages/count_tokens": ("POST", anthropic.count_tokens),
    responses.PATH: ("POST", responses.create),
    "/v1/embeddings": ("POST", embeddings.create),
}
MODELS_PATH = "/v1/models"


def api_of(path: str, headers: dict[str, str]) -> ModuleType:
    """The API a request speaks: Azure's paths, Anthropic's, or the model list asked with Anthropic's version
    header; OpenAI's otherwise."""
    if path.startswith("/openai/"):
        return azure
    anthropic_call = path.startswith("/v1/messages") or (
        path.startswith(MODELS_PATH) and "anthropic-version" in headers
    )
    return anthropic if anthropic_call else openai


class _Server(ThreadingHTTPServer):
    """Threaded server with a big backlog (the benchmark opens many connections at once)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024
    emulator: Emulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that stalls on offline machines.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # clients going away are normal, not worth a traceback
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One connection; requests on it are served in turn (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "llm-edge-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server
    _rec: RecordedRequest | None = None

    # ---- connection bookkeeping

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.emulator._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.log:
            sys.stderr.write(f"emulator {self.address_string()} {format % args}\n")

    # ---- dispatch

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        emu = self.server.emulator
        self._rec = None
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        try:
            raw = self._read_body()
        except ValueError:
            self._send(400, dumps(openai.error_body(400, "Invalid request body framing")))
            self.close_connection = True
            return
        if path.startswith(CONTROL_PREFIX):
            self._control(path, split.query, raw)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        body: Any = None
        if raw:
            try:
                body = loads(raw)
            except ValueError:
                body = None
        self._rec, fault = emu._on_request(self.command, path, split.query, headers, body, raw)
        status = self._serve(path, headers, raw, body, fault)
        if emu.log:
            self.log_message('"%s" %s', self.requestline, status)

    # ---- writing

    def _head(self, status: int, ctype: str, length: int | None, extra: Sequence[tuple[str, str]] = ()) -> bytes:
        if self._rec is not None:  # before the first byte goes out, so a client never sees it unset
            self._rec.status = status
        reason = self.responses.get(status, ("Overloaded" if status == 529 else "Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", "Server: llm-edge-emulator"]
        lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in extra]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        extra: Sequence[tuple[str, str]] = (),
        fault: Fault | None = None,
    ) -> int:
        """Write a whole-body response, applying drip / cut_after of the fault."""
        drip = fault.drip if fault else 0.0
        cut = fault.cut_after if fault else None
        head = self._head(status, ctype, len(body), extra)
        if self.command == "HEAD":
            body = b""
        if cut is not None:
            self.close_connection = True
            self.wfile.write(head + body[:cut])
            self._abort()
            return status
        if drip <= 0:
            self.wfile.write(head + body)
            return status
        self.wfile.write(head)
        for k, piece in enumerate(fragments(body.decode("latin-1"), 4)):
            if k and self._pause(drip):
                self._abort()
                return status
            self.wfile.write(piece.encode("latin-1"))
        return status

    def _send_stream(
        self, events: list[bytes], extra: Sequence[tuple[str, str]], fault: Fault | None, error_event: bytes | None,
        ctype: str = "text/event-stream; charset=utf-8",
    ) -> int:
        """Write SSE events (or event-stream frames) as HTTP chunks, applying drip / cut_after / error_after."""
        drip = fault.drip if fault and fault.drip else self.server.emulator.drip
        cut = fault.cut_after if fault else None
        err_after = fault.error_after if fault else None
        if err_after is not None and error_event is not None:
            events = [*events[:err_after], error_event]
        head = self._head(200, ctype, None, [("Cache-Control", "no-cache"), *extra])
        if cut is not None:
            events = events[:cut]
        out = [head]
        for k, event in enumerate(events):
            if drip > 0 and k:
                self.wfile.write(b"".join(out))
                out = []
                if self._pause(drip):
                    self._abort()
                    return 200
            out.append(b"%x\r\n%s\r\n" % (len(event), event))
        if cut is not None:
            self.close_connection = True
            self.wfile.write(b"".join(out))
            self._abort()
            return 200
        out.append(b"0\r\n\r\n")
        self.wfile.write(b"".join(out))
        return 200

    def _abort(self) -> None:
        """Close the connection now, without finishing the response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake when the emulator stops; True means stop now."""
        return self.server.emulator._stopping.wait(seconds)

    def _hang(self) -> int:
        """Never answer: wait until the emulator stops or the client goes away, then close."""
        self.close_connection = True
        while not self.server.emulator._stopping.wait(0.05):
            if self._client_gone():
                break
        self._abort()
        return 0

    # ---- the emulated APIs

    def _serve(self, path: str, headers: dict[str, str], raw: bytes, body: Any, fault: Fault | None) -> int:
        emu = self.server.emulator
        api = api_of(path, headers)
        stream = isinstance(body, dict) and body.get("stream") is True
        extra = [(api.ID_HEADER, new_id("req_")), *(reply_headers(fault) if fault else ())]
        if fault is not None and fault.hang:
            return self._hang()
        delay = fault.delay if fault and fault.delay else emu.latency
        if delay > 0 and self._pause(delay):
            self._abort()
            return 0
        if path.startswith("/model/") or path.startswith(vertex.PREDICT_PREFIX) or path == vertex.TOKEN_PATH:
            return self._serve_cloud(path, headers, raw, fault)
        if fault is not None and fault.status is not None:
            return self._send(int(fault.status), status_payload(fault, api), extra=extra, fault=fault)
        if fault is not None and fault.garbage:
            return self._send_garbage(str(fault.garbage), api, stream, extra, fault)
        if fault is not None and fault.script is not None:
            if stream:
                return self._send_stream(script_events(fault.script), extra, fault, None)
            script = fault.script.encode() if isinstance(fault.script, str) else fault.script
            return self._send(200, script, extra=extra, fault=fault)
        try:
            reply = self._route(path, headers, raw, body, api, stream)
        except ApiError as err:
            return self._send(err.status, dumps(api.render_error(err)), extra=extra)
        if fault is not None and fault.usage:
            reply = with_usage(reply, fault.usage)
        if isinstance(reply, list):
            ends = responses.stream_error if path == responses.PATH else api.stream_error
            return self._send_stream(reply, extra, fault, ends(fault.message if fault else None))
        return self._send(200, dumps(reply), extra=extra, fault=fault)

    def _serve_cloud(self, path: str, headers: dict[str, str], raw: bytes, fault: Fault | None) -> int:
        """Bedrock's InvokeModel, Vertex AI's rawPredict and Google's token endpoint (their own auth and errors)."""
        emu = self.server.emulator
        extra = reply_headers(fault) if fault else []
        if path.startswith("/model/"):
            try:
                reply = bedrock.handle(emu.aws, self.command, self.path, headers, raw, fault)
            except ApiError as err:
                status, more, payload = bedrock.render(err)
                return self._send(status, payload, extra=[*more, *extra])
            if reply.frames is not None:
                return self._send_stream(reply.frames, [*reply.headers, *extra], fault, None, reply.ctype)
            return self._send(reply.status, reply.body, reply.ctype, [*reply.headers, *extra], fault)
        try:
            if path == vertex.TOKEN_PATH:
                return self._send(200, dumps(vertex.issue_token(emu.google, raw)))
            if fault is not None and fault.status is not None:  # the injected answer replaces the real one
                raise vertex.google_error(int(fault.status), fault.message or f"Error {fault.status}")
            body, stream = vertex.predict(emu.google, path, headers, raw)
        except ApiError as err:
            return self._send(err.status, vertex.render(err), extra=extra)
        reply = anthropic.messages(body, stream)
        if isinstance(reply, list):
            return self._send_stream(reply, extra, fault, anthropic.stream_error(fault.message if fault else None))
        return self._send(200, dumps(reply), extra=extra, fault=fault)

    def _send_garbage(
        self, kind: str, api: ModuleType, stream: bool, extra: list[tuple[str, str]], fault: Fault
    ) -> int:
        if kind == "html":
            return self._send(200, HTML_PAGE, "text/html; charset=utf-8", extra, fault)
        if stream:
            return self._send_stream(api.garbage_stream(garbage_data(kind, True)), extra, fault, None)
        return self._send(200, garbage_data(kind, False), extra=extra, fault=fault)

    def _route(
        self, path: str, headers: dict[str, str], raw: bytes, body: Any, api: ModuleType, stream: bool
    ) -> dict[str, Any] | list[bytes]:
        """Check method, auth and body framing, then let the endpoint answer (or raise an ApiError)."""
        method = self.command
        emu = self.server.emulator
        if path.startswith(responses.PATH + "/"):  # a stored response: retrieve, delete, input items
            api.check_request(headers, emu.openai_key)
            return responses.by_id(method, path, parse_qs(urlsplit(self.path).query))
        if api is azure:
            if method != "POST":
                raise azure.not_found()
            azure.check_request(headers, emu.azure_key)
            if raw and body is None:
                raise api.bad_json()
            return azure.chat(path, urlsplit(self.path).query, body, stream, emu.azure_deployments)
        expected, endpoint = ENDPOINTS.get(path) or (
            ("GET", None) if path == MODELS_PATH or path.startswith(MODELS_PATH + "/") else (None, None)
        )
        if expected is None:
            raise api.not_found(method, path)
        if method != expected and not (method == "HEAD" and expected == "GET"):
            raise ApiError(
                f"Method {method} not allowed for {path}; use {expected}",
                405,
                "invalid_request_error",
                None,
                "method_not_allowed",
            )
        api.check_request(headers, emu.anthropic_key if api is anthropic else emu.openai_key)
        if endpoint is None:
            return emu._models_payload(path, api)
        if raw and body is None:
            raise api.bad_json()
        if body is None:
            raise api.no_body()
        return endpoint(body, stream)

    # ---- control API

    def _control(self, path: str, query: str, raw: bytes) -> None:
        emu = self.server.emulator
        try:
            data = loads(raw) if raw else None
        except ValueError:
            self._send(400, dumps({"error": "body is not JSON"}))
            return
        action = CONTROL.get((path, self.command))
        if action is None:
            self._send(404, dumps({"error": f"no control endpoint {self.command} {path}"}))
            return
        try:
            out = action(emu, data, parse_qs(query))
        except (ValueError, TypeError) as exc:
            self._send(400, dumps({"error": str(exc)}))
            return
        self._send(200, dumps(out))


# ------------------------------------------------------------------------------------------ control API


def _push_faults(emu: Emulator, data: Any, params: dict[str, list[str]]) -> dict[str, Any]:
    """A JSON list of faults, or ``{"faults": [...], "default": {...}, "path": ...}``."""
    qpath = params.get("path", [None])[0]
    if isinstance(data, list):
        emu.push_faults(*data, path=qpath)
        return {"queued": len(data)}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON list of faults or an object with 'faults'/'default'")
    fpath = data.get("path", qpath)
    unknown = sorted(set(data) - {"faults", "path", "default"})
    if unknown:
        raise ValueError(f"unknown key(s): {', '.join(unknown)}")
    faults = data.get("faults") or []
    if not isinstance(faults, list):
        raise ValueError("'faults' must be a list")
    emu.push_faults(*faults, path=fpath)
    if "default" in data:
        emu.set_default_fault(data["default"], path=fpath)
    return {"queued": len(faults)}


def _list_requests(emu: Emulator, data: Any, params: dict[str, list[str]]) -> dict[str, Any]:
    fpath = params.get("path", [None])[0]
    return {
        "requests": [r.to_dict() for r in emu.requests if fpath is None or r.path.startswith(fpath)],
        "count": emu.count(fpath),
    }


def _clear_faults(emu: Emulator, data: Any, params: dict[str, list[str]]) -> dict[str, Any]:
    emu.clear_faults()
    return {"cleared": True}


def _reset(emu: Emulator, data: Any, params: dict[str, list[str]]) -> dict[str, Any]:
    emu.reset()
    return {"reset": True}


# (path, method) -> action(emulator, JSON body, query parameters) -> JSON answer
CONTROL: dict[tuple[str, str], Callable[[Emulator, Any, dict[str, list[str]]], Any]] = {
    ("/_emulator/health", "GET"): lambda emu, data, params: {"status": "ok", "url": emu.url},
    ("/_emulator/faults", "POST"): _push_faults,
    ("/_emulator/faults", "DELETE"): _clear_faults,
    ("/_emulator/faults", "GET"): lambda emu, data, params: emu.fault_state(),
    ("/_emulator/requests", "GET"): _list_requests,
    ("/_emulator/reset", "POST"): _reset,
}


# ------------------------------------------------------------------------------------------ Emulator


class Emulator:
    """The provider emulator: an HTTP server in a background thread, plus recording and fault injection.

    Faults: :meth:`push_faults` queues faults, each used by exactly one later request (FIFO), optionally only
    for requests whose path starts with ``path``; when no queued fault matches, the default fault for the
    longest matching path prefix (see :meth:`set_default_fault`) applies to every request until cleared.
    Control endpoints under ``/_emulator/`` are never faulted, recorded or counted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        openai_key: str | None = None,
        anthropic_key: str | None = None,
        *,
        record: bool = True,
        latency: float = 0.0,
        drip: float = 0.0,
        models: Sequence[str] | None = None,
        log: bool = False,
        azure_key: str | None = None,
        azure_deployments: Sequence[str] | None = None,
    ) -> None:
        self.host = host
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.azure_key = azure_key  # Azure paths need an api-key or bearer token always; this one when set
        self.azure_deployments = tuple(azure_deployments) if azure_deployments is not None else None
        self.record = record
        self.latency = latency
        self.drip = drip
        self.models = tuple(models) if models else DEFAULT_MODELS
        self.log = log
        self.aws = bedrock.AwsAccounts()  # Bedrock: the access keys it accepts, its region
        self.google = vertex.GoogleAccounts()  # Vertex AI: service accounts, issued tokens
        self.connections = 0  # connections accepted so far (keep-alive shows as fewer connections)
        self._lock = threading.Lock()
        self._recordings = Recordings()
        self._faults = FaultBook()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None
        self._port = port
        self._bind()

    # ---- lifecycle

    def _bind(self) -> None:
        cls = _Server6 if ":" in self.host else _Server
        self._server = cls((self.host, self._port), _Handler)
        self._server.emulator = self
        self._port = int(self._server.server_address[1])

    def start(self) -> Emulator:
        """Serve in a daemon thread; can be called again after :meth:`stop` (same port)."""
        if self._thread is not None:
            return self
        if self._server is None:
            self._bind()
        self._stopping.clear()
        server = self._server
        assert server is not None
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"emulator-{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (hanging and dripping requests end at once)."""
        self._stopping.set()
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._open.add(conn)
                self.connections += 1
            else:
                self._open.discard(conn)

    # ---- addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # ---- recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._recordings.requests)

    def last(self, path: str | None = None) -> RecordedRequest | None:
        """The most recent recorded request (optionally under a path prefix)."""
        with self._lock:
            return self._recordings.last(path)

    def count(self, path: str | None = None) -> int:
        """Requests received (recorded or not) whose path starts with ``path``; all when None."""
        with self._lock:
            return self._recordings.count(path)

    def reset(self, faults: bool = True) -> None:
        """Forget recorded requests and counts, and (by default) every queued and default fault."""
        with self._lock:
            self._recordings.clear()
            if faults:
                self._faults.clear()

    # ---- faults

    def push_faults(self, *faults: Fault | dict[str, Any], path: str | None = None) -> None:
        """Queue faults; each is applied to one later request whose path starts with ``path``."""
        parsed = [as_fault(f) for f in faults]
        with self._lock:
            self._faults.push(parsed, path)

    def set_default_fault(self, fault: Fault | dict[str, Any] | None, path: str | None = None) -> None:
        """Apply ``fault`` to every request under ``path`` (all when None) until set to None or cleared."""
        parsed = None if fault is None else as_fault(fault)
        with self._lock:
            self._faults.set_default(parsed, path)

    def clear_faults(self) -> None:
        """Drop every queued and default fault."""
        with self._lock:
            self._faults.clear()

    def fault_state(self) -> dict[str, Any]:
        """Queued and default faults, as the control API lists them."""
        with self._lock:
            return self._faults.state()

    def _on_request(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Any, raw: bytes
    ) -> tuple[RecordedRequest | None, Fault | None]:
        """Count, record and pick the fault for one request, atomically."""
        with self._lock:
            counts = self._recordings.counts
            counts[path] = counts.get(path, 0) + 1
            fault = self._faults.pick(path)
            rec = None
            if self.record:
                rec = RecordedRequest(
                    method, path, query, headers, body, raw, time.time(), None, fault.to_dict() if fault else None
                )
                self._recordings.requests.append(rec)
            return rec, fault

    def _models_payload(self, path: str, api: ModuleType) -> dict[str, Any]:
        """GET /v1/models (each API lists its own models) or /v1/models/{id}."""
        if path.startswith(MODELS_PATH + "/"):
            model_id = path[len(MODELS_PATH) + 1 :]
            if model_id not in self.models:
                raise ApiError(f"The model '{model_id}' does not exist", 404, None, "model", "model_not_found")
            return api.model_card(model_id)
        claude = api is anthropic
        return api.model_list([m for m in self.models if m.startswith("claude") == claude])

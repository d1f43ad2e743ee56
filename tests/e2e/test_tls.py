"""TLS: HTTPS on PORT with a self-signed certificate made here, real clients, and every bad pair refused."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import openai
import pytest
import urllib3

from tests.conftest import provider_env
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)


def make_pair(d: Path, name: str, cn: str = "localhost") -> tuple[Path, Path]:
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", f"/CN={cn}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_pair(d, "server")
    make_pair(d, "other", cn="other")
    (d / "garbage.crt").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    shutil.copy(d / "server.key", d / "locked.key")
    os.chmod(d / "locked.key", 0)
    (d / "a-directory.crt").mkdir()
    return d


@pytest.fixture(scope="module")
def https_gateway(emulator, pki):
    gw = GatewayProcess({**provider_env(emulator), "TLS_CERT_PATH": str(pki / "server.crt"),
                         "TLS_KEY_PATH": str(pki / "server.key")}).start()
    yield gw
    gw.stop()


def test_the_openai_sdk_talks_https_and_verifies_the_certificate(https_gateway, pki, upstream):
    assert https_gateway.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(pki / "server.crt"))
    with openai.DefaultHttpxClient(verify=context) as http_client:
        client = openai.OpenAI(base_url=https_gateway.url + "/v1", api_key="dev", http_client=http_client,
                               max_retries=0, timeout=10)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi tls"}])
    assert reply.choices[0].message.content == "Echo: hi tls"
    verified = urllib3.PoolManager(retries=False, ca_certs=str(pki / "server.crt"))
    assert verified.request("GET", https_gateway.url + "/health").status == 200


def test_a_client_that_does_not_trust_the_certificate_is_refused(https_gateway, pki):
    stranger = urllib3.PoolManager(retries=False, ca_certs=str(pki / "other.crt"))
    with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.request("GET", https_gateway.url + "/health")


def test_plain_http_on_the_https_port_gets_no_answer(https_gateway):
    with socket.create_connection(("127.0.0.1", https_gateway.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert b'"status"' not in data


def test_an_open_gateway_warns_once_at_start(https_gateway):
    logs = https_gateway.logs()
    assert logs.count("the gateway is OPEN (development mode)") == 1


def _in_a_locked_down_root(cmd: list[str]) -> list[str]:
    """Root reads any file; without its capabilities (setpriv) a mode-000 file is unreadable again."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]


@pytest.mark.parametrize("cert,key,fragment", [
    ("missing.crt", "server.key", "TLS_CERT_PATH: cannot read"),
    ("server.crt", "missing.key", "TLS_KEY_PATH: cannot read"),
    ("server.crt", "locked.key", "TLS_KEY_PATH: cannot read"),
    ("a-directory.crt", "server.key", "cannot read the certificate or key"),
    ("garbage.crt", "server.key", "are not a PEM certificate and its private key"),
    ("server.crt", "other.key", "KEY_VALUES_MISMATCH"),
    ("server.crt", None, "TLS_CERT_PATH and TLS_KEY_PATH must be set together"),
])
def test_a_missing_unreadable_or_wrong_file_stops_start_up_with_one_line(emulator, pki, cert, key, fragment):
    env = {**provider_env(emulator), "TLS_CERT_PATH": str(pki / cert)}
    if key:
        env["TLS_KEY_PATH"] = str(pki / key)
    gw = GatewayProcess(env)
    log = open(gw.log_path, "ab")
    proc = subprocess.Popen(_in_a_locked_down_root([str(Path(gw.env["PATH"].split(":")[0]) / "gunicorn"),
                                                    "-c", "gunicorn.conf.py", "app.wsgi:app"]),
                            cwd=gw.cwd, env=gw.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    assert proc.wait(30) == 2
    lines = gw.logs().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-edge-agent: configuration error: "), lines
    assert fragment in lines[0]
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", f"http://127.0.0.1:{gw.port}/health", timeout=1)


def test_a_stalled_tls_handshake_is_closed_after_the_header_timeout(emulator, pki, upstream):
    """A client that starts a handshake and stops (slowloris on TLS) holds a thread only GUNICORN_HEADER_TIMEOUT;
    with every thread of the node pinned by stalled handshakes, a real client is still answered after it."""


    gw = GatewayProcess({**provider_env(emulator), "TLS_CERT_PATH": str(pki / "server.crt"),
                         "TLS_KEY_PATH": str(pki / "server.key"), "GUNICORN_HEADER_TIMEOUT": "1"},
                        workers=1, threads=2).start()
    stalled = []
    try:
        for _ in range(4):  # more than the node's threads
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(b"\x16\x03\x01\x02\x00")  # a TLS record header announcing a ClientHello that never comes
            stalled.append(sock)
        started = time.monotonic()
        for sock in stalled:
            assert sock.recv(1024) == b"", "the gateway should close a stalled handshake"
        assert time.monotonic() - started < 6, "closed by the header timeout, not by the client"
        verified = urllib3.PoolManager(retries=False, ca_certs=str(pki / "server.crt"),
                                       timeout=urllib3.Timeout(connect=2, read=5))
        assert verified.request("GET", gw.url + "/health").status == 200
    finally:
        for sock in stalled:
            sock.close()
        gw.stop()

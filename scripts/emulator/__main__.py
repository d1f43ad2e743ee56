"""The emulator's command line: ``python scripts/emulator [options]``, or ``python -m emulator`` from scripts/.

Runs until SIGTERM/SIGINT, after printing ``EMULATOR LISTENING http://host:port`` (``scripts/serve`` and the
benchmark read the port from that line).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if not __package__:  # run as `python scripts/emulator`: import the package from scripts/, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from emulator import Emulator


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="emulator", description="Local OpenAI + Anthropic provider emulator")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default 0)")
    parser.add_argument(
        "--openai-key",
        default=os.environ.get("EMULATOR_OPENAI_KEY"),
        help="require this Bearer key on OpenAI endpoints (env EMULATOR_OPENAI_KEY)",
    )
    parser.add_argument(
        "--anthropic-key",
        default=os.environ.get("EMULATOR_ANTHROPIC_KEY"),
        help="require this key on Anthropic endpoints (env EMULATOR_ANTHROPIC_KEY)",
    )
    parser.add_argument(
        "--azure-key",
        default=os.environ.get("EMULATOR_AZURE_KEY"),
        help="require this api-key (or bearer token) on Azure OpenAI paths (env EMULATOR_AZURE_KEY)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not keep requests (for benchmarks)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every response's headers")
    parser.add_argument("--drip", type=float, default=0.0, help="seconds between SSE events of every stream")
    parser.add_argument("--models", default=None, help="comma-separated model ids for /v1/models")
    parser.add_argument("--log", action="store_true", help="log every request to stderr")
    parser.add_argument("--clouds-dir", default=None,
                        help="also play Bedrock and Vertex AI: make an AWS key and a service account, and write "
                             "them (clouds.json, service-account.json) to this folder for the gateway")
    return parser.parse_args(argv)


def demo_clouds(emu: Emulator, folder: str) -> None:
    """Credentials the fakes accept, written where scripts/serve reads them (``clouds.json``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_id, secret = "AKIAEMULATOR" + secrets.token_hex(4).upper(), secrets.token_urlsafe(30)
    emu.aws.add(key_id, secret)
    email = "gateway@emulator-project.iam.gserviceaccount.com"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emu.google.add(email, "emulator-key", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    account = Path(folder) / "service-account.json"
    account.write_text(json.dumps({
        "type": "service_account", "project_id": "emulator-project", "private_key_id": "emulator-key",
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": email, "client_id": "1", "token_uri": emu.url + "/token"}))
    account.chmod(0o600)
    clouds = Path(folder) / "clouds.json"
    clouds.write_text(json.dumps({"url": emu.url, "aws_access_key_id": key_id, "aws_secret_access_key": secret,
                                  "aws_region": emu.aws.region, "credentials_file": str(account)}))
    clouds.chmod(0o600)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; print the listening URL first so a parent process can read the port."""
    args = parse_args(argv)
    emu = Emulator(
        args.host,
        args.port,
        args.openai_key,
        args.anthropic_key,
        record=not args.no_record,
        latency=args.latency,
        drip=args.drip,
        models=[m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
        log=args.log,
        azure_key=args.azure_key,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emu.start()
    if args.clouds_dir:
        demo_clouds(emu, args.clouds_dir)
    sys.stdout.write(f"EMULATOR LISTENING {emu.url}\n")
    sys.stdout.flush()
    while not done.wait(1.0):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

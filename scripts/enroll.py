"""``scripts/add-client ID TIER``: create a client key, store only its digest, print the key once.

The clients file keeps its comments: the entry is added as text (into the
``clients:`` list, with the list's own indentation), then the whole file is
parsed and validated as the gateway would before it replaces the old one
atomically. The key goes to stdout alone (``KEY=$(scripts/add-client ...)``);
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

from app.config.settings import BY_ENV, ConfigError, load_environ, read_setting
from app.config.yaml_file import load_yaml, parse_yaml
from app.limits.clients import parse_clients
from app.limits.policy import parse_policy

_ROOT = Path(__file__).resolve().parents[1]
_HEADER = ("# Client keys (CLIENTS_FILE). Each client: id, tier, and the SHA-256 hex digest\n"
           "# of its key (never the key itself). Create one with: scripts/add-client ID TIER\n")
KEY_PREFIX = "sk-edge-"


def new_key() -> str:
    """256 random bits; the ``sk-`` prefix lets secret scanners and the log redactor recognise it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _entry(indent: str, client_id: str, tier: str, digest: str, budgets: dict[str, float]) -> str:
    pad = indent + "  "
    lines = [f"{indent}- id: {client_id}", f"{pad}tier: {tier}", f"{pad}key_sha256: {digest}"]
    lines += [f"{pad}budget_cents_per_{period}: {cents:g}" for period, cents in budgets.items()]
    return "\n".join(lines) + "\n"


def add_entry(text: str, client_id: str, tier: str, digest: str, budgets: dict[str, float]) -> str:
    """``text`` with the client appended to its ``clients:`` list (comments and layout kept)."""
    empty = re.search(r"^clients:[ \t]*(\[\s*\])?[ \t]*(#.*)?$", text, re.M)
    if empty is None:
        if text.strip():
            raise ConfigError("CLIENTS_FILE: no top-level 'clients:' list to add to")
        return _HEADER + "clients:\n" + _entry("  ", client_id, tier, digest, budgets)
    after = text[empty.end():]
    item = re.search(r"^([ \t]*)- ", after, re.M)
    indent = item.group(1) if item else "  "
    # The list ends at the next top-level key (or the end of the file).
    end = re.search(r"^[^\s#-]", after, re.M)
    cut = empty.end() + (end.start() if end else len(after))
    head = text[:empty.start()] + "clients:" + (f"  {empty.group(2)}" if empty.group(2) else "")
    body = text[empty.end():cut]
    if body and not body.endswith("\n"):
        body += "\n"
    if not body.startswith("\n"):
        body = "\n" + body
    return head + body + _entry(indent, client_id, tier, digest, budgets) + text[cut:]


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_client(clients_file: Path, rate_limits_file: Path, client_id: str, tier: str,
               budgets: dict[str, float]) -> str:
    """Add the client and return its new key (the only time it exists outside the caller)."""
    policy = parse_policy(load_yaml(str(rate_limits_file), "RATE_LIMITS_FILE"))
    text = clients_file.read_text(encoding="utf-8") if clients_file.exists() else ""
    before = parse_clients(parse_yaml(text) or {}, policy.tiers, next(iter(policy.tiers)))
    if any(c.id == client_id for c in before.clients):
        raise ConfigError(f"CLIENTS_FILE: client {client_id!r} already exists in {str(clients_file)!r}")
    key = new_key()
    digest = hashlib.sha256(key.encode()).hexdigest()
    updated = add_entry(text, client_id, tier, digest, budgets)
    after = parse_clients(parse_yaml(updated) or {}, policy.tiers, next(iter(policy.tiers)))
    added = [c for c in after.clients if c.id == client_id]
    if len(after.clients) != len(before.clients) + 1 or not added or added[0].digest.hex() != digest:
        raise ConfigError(f"CLIENTS_FILE: could not add to {str(clients_file)!r} without changing other "
                          "entries; add the entry by hand")
    _write_atomically(clients_file, updated)
    return key


def _default_path(env: dict[str, str], name: str) -> str:
    """The file named by setting ``name``; its default (relative) is taken from the repository root."""
    path = read_setting(env, name)
    return str(_ROOT / path) if path == BY_ENV[name].default else path


def main(argv: list[str] | None = None) -> int:
    env = load_environ()
    try:
        clients_file, rate_limits_file = _default_path(env, "CLIENTS_FILE"), _default_path(env, "RATE_LIMITS_FILE")
    except ConfigError as exc:
        print(f"add-client: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="scripts/add-client", description=__doc__.splitlines()[0])
    parser.add_argument("id", help="client id: letters, digits, '.', '_' or '-'")
    parser.add_argument("tier", help="a tier of the rate limit file (free, pro, enterprise, ...)")
    parser.add_argument("--budget-day", type=float, metavar="CENTS", help="spend budget per UTC day")
    parser.add_argument("--budget-month", type=float, metavar="CENTS", help="spend budget per UTC month")
    parser.add_argument("--file", default=clients_file,
                        help=f"clients file (default: $CLIENTS_FILE, else {BY_ENV['CLIENTS_FILE'].default})")
    parser.add_argument("--rate-limits", default=rate_limits_file,
                        help=f"rate limit file naming the tiers (default: $RATE_LIMITS_FILE, else "
                             f"{BY_ENV['RATE_LIMITS_FILE'].default})")
    args = parser.parse_args(argv)
    budgets = {p: v for p, v in (("day", args.budget_day), ("month", args.budget_month)) if v is not None}
    try:
        key = add_client(Path(args.file), Path(args.rate_limits), args.id, args.tier, budgets)
    except ConfigError as exc:
        print(f"add-client: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"add-client: added client {args.id!r} (tier {args.tier}) to {args.file}. The key above is shown "
          "only this once; the file holds its SHA-256 digest. Load it: kill -HUP <gunicorn master pid>",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

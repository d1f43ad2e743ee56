"""Client keys (``CLIENTS_FILE``): who is calling, and in which tier.

The file holds only SHA-256 digests of keys, never keys::

    clients:
      - id: acme
        tier: pro
        key_sha256: 9f86d081...          # sha256 of the key, hex
        budget_cents_per_day: 500        # optional spend budgets
        budget_cents_per_month: 10000

With no clients the gateway is open (development mode): every caller is the
one ``anonymous`` client, in ``ANONYMOUS_TIER`` (default: the most generous tier).

Why a dict lookup by digest is a constant-time comparison in the sense that
matters: a timing attack learns how long a comparison ran, i.e. how much of
the *compared value* matched. Here the compared value is SHA-256 of what the
caller sent, so a caller who learns that their digest shares a prefix with a
stored digest cannot use it: finding a key whose digest extends that prefix
is a preimage search. The lookup (hash the digest, compare bucket entries)
therefore leaks nothing about any stored key, costs O(1) however many clients
there are, and the entry it finds is confirmed with ``hmac.compare_digest``
as well, so no byte of a secret is ever compared with an early exit.

A key once found valid is remembered by its own text (``ClientRegistry.find``),
so a client's next requests skip the SHA-256: a few entries per client at most
(a digest has one key), never an invalid key (those are digested every time). Its
lookup hashes the presented text with Python's per-process keyed string hash and
compares texts only when the full hashes are equal, which for any other text
happens with probability 2^-64: what a caller could time is the hash of its own
text, not any byte of a stored key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.config.settings import ConfigError

_SETTING = "CLIENTS_FILE"
ANONYMOUS = "anonymous"
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_BUDGET_FIELDS = {"budget_cents_per_day": "day", "budget_cents_per_month": "month"}


def key_digest(key: str) -> bytes:
    """SHA-256 of a client key: what the clients file stores (as hex) and what lookups compare."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    tier: str
    budgets: Mapping[str, float]  # period ("day", "month") -> cents; empty when none
    digest: bytes = b""


class ClientRegistry:
    """Finds the client a key belongs to; immutable after construction, shared by every thread."""

    def __init__(self, clients: Iterable[Client], anonymous_tier: str) -> None:
        self.clients = tuple(clients)
        self._by_digest = {c.digest: c for c in self.clients}
        self._found: dict[str, Client] = {}  # keys found valid, by their text (module docstring)
        self.anonymous = Client(ANONYMOUS, anonymous_tier, {})
        # No clients configured: development mode, every caller is ``anonymous``. (An attribute: every
        # request asks, and the clients never change after construction.)
        self.open = not self.clients

    def find(self, key: str) -> Client | None:
        """The client whose key this is, or None (see the module docstring for why this is safe)."""
        client = self._found.get(key)
        if client is not None:
            return client
        digest = key_digest(key)
        client = self._by_digest.get(digest)
        if client is not None and hmac.compare_digest(client.digest, digest):
            if len(self._found) < 4 * len(self.clients):  # bounded even for texts of one key's bytes
                self._found[key] = client
            return client
        return None


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a caller sent: ``Authorization: Bearer <key>`` first, else ``x-api-key``."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


def _client(entry: Any, index: int, tiers: Iterable[str]) -> Client:
    where = f"{_SETTING}: clients[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with id, tier and key_sha256")
    unknown = set(entry) - {"id", "tier", "key_sha256", *_BUDGET_FIELDS}
    if unknown:
        raise ConfigError(f"{where} has unknown field {sorted(unknown)[0]!r}")
    cid = entry.get("id")
    if not isinstance(cid, str) or not CLIENT_ID.match(cid):
        raise ConfigError(f"{where}.id must be 1-64 letters, digits, '.', '_' or '-', got {cid!r}")
    where = f"{_SETTING}: client {cid!r}"
    tier = entry.get("tier")
    if tier not in tiers:
        raise ConfigError(f"{where}: tier {tier!r} is not in RATE_LIMITS_FILE (tiers: {', '.join(sorted(tiers))})")
    digest = entry.get("key_sha256")
    if not isinstance(digest, str) or not _DIGEST.match(digest.lower()):
        raise ConfigError(f"{where}: key_sha256 must be 64 hex digits (the SHA-256 of the key, never the key)")
    budgets: dict[str, float] = {}
    for field, period in _BUDGET_FIELDS.items():
        value = entry.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: {field} must be a positive number of cents, got {value!r}")
        budgets[period] = float(value)
    return Client(cid, tier, budgets, bytes.fromhex(digest))


def parse_clients(data: Mapping[str, Any], tiers: Iterable[str], anonymous_tier: str) -> ClientRegistry:
    """The registry from the file's parsed YAML; a ``ConfigError`` names the bad entry."""
    tiers = set(tiers)
    entries = data.get("clients")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ConfigError(f"{_SETTING}: 'clients' must be a list")
    clients = [_client(entry, i, tiers) for i, entry in enumerate(entries)]
    seen_ids: set[str] = set()
    seen_digests: set[bytes] = set()
    for c in clients:
        if c.id in seen_ids:
            raise ConfigError(f"{_SETTING}: client id {c.id!r} appears twice")
        if c.digest in seen_digests:
            raise ConfigError(f"{_SETTING}: client {c.id!r} has the same key as another client")
        seen_ids.add(c.id)
        seen_digests.add(c.digest)
    if not clients and anonymous_tier not in tiers:  # only the open gateway has an anonymous caller
        raise ConfigError(f"ANONYMOUS_TIER: tier {anonymous_tier!r} is not in RATE_LIMITS_FILE "
                          f"(tiers: {', '.join(sorted(tiers))})")
    return ClientRegistry(clients, anonymous_tier)

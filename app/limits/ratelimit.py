"""Request and token rate limits, held across every worker and replica that shares one Redis.

One atomic Lua script (``lua/check.lua``, GCRA on Redis ``TIME``) checks and
counts the client's request limit, its tokens-per-minute allowance and the
global limit together. A slow client pays one script per request; a fast one
(a tier allowing more than one request per lease window) is admitted in small
leased batches, one script per batch (``lease.py`` says why that keeps the
limits). Scripts are loaded once per worker and called by SHA (``EVALSHA``;
redis-py's ``Script`` loads them again on ``NOSCRIPT``, e.g. after a Redis
restart).

Redis Cluster: a script may only touch keys of one hash slot, and every
request touches the one global key anyway, so all limiter keys share the
hash tag ``{llm-edge-limits}`` and live on one shard. Spreading client keys
over shards would not move load off that shard; it would only make the
single atomic check impossible.

All Redis calls go through the worker's ``RedisGuard``: when Redis is slow,
down, failing over or its breaker is open, the same check runs in this
worker's memory (``LocalLimiter``) at its share of each limit (fail-open), or
with ``refuse_without_redis`` the request is refused with a 503 (fail-closed,
``RATE_LIMIT_WITHOUT_REDIS=refuse``); the guard's failures turn ``/health`` to
degraded either way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.errors import LimiterUnavailable
from app.health import Check
from app.limits.decision import GLOBAL, REQUESTS, TOKENS, Decision
from app.limits.lease import Lease
from app.limits.local import LocalLimiter
from app.limits.policy import LimitPolicy, Tier, TokenRate
from app.resilience.redis_guard import RedisGuard

_LUA = Path(__file__).with_name("lua")
CHECK_SCRIPT = (_LUA / "check.lua").read_text(encoding="utf-8")
DEBIT_SCRIPT = (_LUA / "debit_tokens.lua").read_text(encoding="utf-8")
KEY_PREFIX = "llm-edge:ratelimit:{llm-edge-limits}:"
_REFUSED = {1: REQUESTS, 2: TOKENS, 3: GLOBAL}
_US = 1_000_000
# How long a thread waits for another's renewal before looking again; the renewal's Redis check is bounded
# by REDIS_SOCKET_TIMEOUT, so this only matters if a renewing thread never came back.
_RENEWAL_WAIT = 1.0


def _us(seconds: float) -> str:
    return repr(seconds * _US)


def lease_cap(policy: LimitPolicy, tier: Tier, window: float) -> int:
    """Most admissions one lease may hold: ``window`` seconds of the tier's (and the global) rate."""
    rates = [tier.requests.per_second] + ([policy.global_requests.per_second] if policy.global_requests else [])
    return max(1, math.floor(min(rates) * window + 1e-9))


class RateLimiter:
    def __init__(self, policy: LimitPolicy, guard: RedisGuard, local_parts: int,
                 local: LocalLimiter | None = None, prefix: str = KEY_PREFIX, lease_window: float = 0.0,
                 refuse_without_redis: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.refuse_without_redis = refuse_without_redis
        self.guard = guard
        self.prefix = prefix
        self.local = local or LocalLimiter(policy, local_parts)
        self.lease_window = lease_window
        self._caps = {name: lease_cap(policy, t, lease_window) for name, t in policy.tiers.items()}
        self._leases: dict[str, Lease] = {}  # per client id; bounded by the clients file
        self._leases_lock = threading.Lock()
        self._clock = clock
        g = policy.global_requests
        global_args = (_us(g.interval), _us(g.period)) if g else ("0", "0")
        # Script arguments per tier, as strings once, so the request path formats nothing.
        self._args = {name: (_us(t.requests.interval), _us(t.requests.period),
                             _us(t.tokens.interval) if t.tokens else "0",
                             _us(t.tokens.window) if t.tokens else "0", *global_args)
                      for name, t in policy.tiers.items()}
        self._global_key = prefix + "global"
        self._keys: dict[str, list[str]] = {}  # per client id; bounded by the clients file
        client = guard.client
        self._check = client.register_script(CHECK_SCRIPT) if client is not None else None
        self._debit = client.register_script(DEBIT_SCRIPT) if client is not None else None

    def load_scripts(self) -> None:
        """Load both scripts now (at worker start), so the first request pays no ``NOSCRIPT`` round trip."""
        if self._check is None or self._debit is None:
            return
        scripts = (self._check, self._debit)
        self.guard.call("ratelimit_load", lambda r: [r.script_load(s.script) for s in scripts], None)

    def keys(self, client_id: str) -> list[str]:
        """The script's keys for a client: requests, tokens, global (one hash slot)."""
        keys = self._keys.get(client_id)
        if keys is None:
            keys = [f"{self.prefix}req:{client_id}", f"{self.prefix}tok:{client_id}", self._global_key]
            self._keys[client_id] = keys
        return keys

    def check(self, client_id: str, tier: Tier) -> Decision:
        """Admit or refuse one request of ``client_id``; counts it when admitted."""
        if self._check is None:
            return self.local.check(client_id, tier.name)
        cap = self._caps[tier.name]
        if cap == 1:
            reply = self._run_check(client_id, tier, self._args[tier.name])
            return self._without_redis(client_id, tier) if reply is None else _decision(reply, tier)
        return self._leased(client_id, tier, cap)

    def _without_redis(self, client_id: str, tier: Tier) -> Decision:
        """Redis configured but not answering: this worker's share of the limit, or a 503 (fail-closed)."""
        if self.refuse_without_redis:
            raise LimiterUnavailable("Rate limits cannot be checked: the gateway's Redis is unreachable or "
                                     "failing over. Retry shortly.", retry_after=self.guard.cooldown)
        return self.local.check(client_id, tier.name)

    def _run_check(self, client_id: str, tier: Tier, args: tuple[str, ...]) -> list[int] | None:
        script, keys = self._check, self.keys(client_id)
        assert script is not None
        return self.guard.script("ratelimit", None, script, keys, args)

    def _leased(self, client_id: str, tier: Tier, cap: int) -> Decision:
        lease = self._leases.get(client_id)
        if lease is None:
            with self._leases_lock:
                lease = self._leases.setdefault(client_id, Lease())
        while True:
            now = self._clock()
            if lease.take(now):
                return lease.decision(now)
            with lease.lock:  # one renewal at a time, the Redis check outside the lock
                renewing = lease.renewing
                if renewing is None:
                    if lease.take(now):  # a renewal ended while this thread looked
                        return lease.decision(now)
                    renewing = lease.renewing = threading.Event()
                    asked, refund = lease.renewal(cap)
                    break
            renewing.wait(_RENEWAL_WAIT)  # then take from the new batch, or renew again
        reply = None
        try:
            reply = self._run_check(client_id, tier, (*self._args[tier.name], str(asked), str(refund)))
        finally:
            with lease.lock:
                lease.renewing = None
                if reply is not None and reply[0]:
                    lease.grant(reply[0], asked, _decision(reply, tier), now, self.lease_window)
            renewing.set()
        if reply is None:
            return self._without_redis(client_id, tier)
        if not reply[0]:
            return _decision(reply, tier)
        return lease.decision(now)

    def debit_tokens(self, client_id: str, tier: Tier, tokens_used: int) -> None:
        """Count an answer's tokens against ``tier``'s tokens per minute (no-op without that limit)."""
        if tier.tokens is None or tokens_used <= 0:
            return
        self._debit_lease(client_id, tier.tokens, tokens_used)
        script = self._debit
        if script is not None:
            keys, args = self.keys(client_id)[1:2], [_us(tokens_used * tier.tokens.interval)]
            if self.guard.script("ratelimit_tokens", None, script, keys, args):
                return
        self.local.debit(client_id, tier.name, tokens_used)

    def _debit_lease(self, client_id: str, tokens: TokenRate, tokens_used: int) -> None:
        lease = self._leases.get(client_id)
        if lease is not None:
            with lease.lock:
                lease.debit_tokens(tokens, tokens_used)

    def health(self) -> Check:
        """Shared limits while Redis answers; this worker's share of each limit while it does not."""
        if self.guard.client is None:
            return Check("degraded", {"mode": "local", "reason": "no Redis configured"})
        if self.guard.open and self.refuse_without_redis:
            return Check("degraded", {"mode": "refuse", "reason": "redis unreachable; requests are refused (503)"})
        if self.guard.open:
            return Check("degraded", {"mode": "local", "share": f"1/{self.local.parts} of each limit per worker",
                                      "reason": "redis unreachable"})
        return Check("ok", {"mode": "redis"})


def _decision(reply: list[int], tier: Tier) -> Decision:
    allowed, refused, remaining, reset_us, retry_us, tokens_left, token_debt_us = reply
    tokens = tier.tokens
    limit = int(tier.requests.burst)
    return Decision(
        # Redis keeps time in whole microseconds: above a million requests a second a client's
        # interval rounds away and Redis may count one too few; the header never says more than the limit.
        allowed=bool(allowed), refused_by=_REFUSED.get(refused), limit=limit, remaining=min(limit, remaining),
        reset=reset_us / _US, retry_after=retry_us / _US,
        token_limit=tokens.per_minute if tokens else None,
        token_remaining=tokens_left if tokens else None,
        token_reset=token_debt_us / _US if tokens else None)

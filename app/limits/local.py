"""Per-worker limits for when Redis cannot be reached: never unlimited, never waiting.

The same GCRA as ``lua/check.lua``, in process memory, with every limit
divided by the number of independent counters (workers per replica x
``RATE_LIMIT_REPLICAS``), so that the sum over all of them stays near the
configured limit while Redis is away. Headers then show this worker's share,
the limit actually in force. Only the tiers' precomputed shares are
used on the request path; one lock guards the arrival times.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from app.limits.decision import GLOBAL, REQUESTS, TOKENS, Decision
from app.limits.policy import LimitPolicy, Rate, Tier, TokenRate

_EPS = 1e-9


class LocalLimiter:
    def __init__(self, policy: LimitPolicy, parts: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.parts = max(1, parts)
        self._global = policy.global_requests.share(self.parts) if policy.global_requests else None
        self._tiers = {name: Tier(name, t.requests.share(self.parts),
                                  t.tokens.share(self.parts) if t.tokens else None)
                       for name, t in policy.tiers.items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def check(self, client_id: str, tier_name: str) -> Decision:
        tier = self._tiers[tier_name]
        req, tok, glb = "r:" + client_id, "t:" + client_id, "global"
        rate, tokens = tier.requests, tier.tokens
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(req, now), now)
            new = tat + rate.interval
            debt = max(self._tat.get(tok, now), now) - now if tokens else 0.0
            refused, retry = None, 0.0
            if new - now > rate.period + _EPS:
                refused, retry = REQUESTS, new - rate.period - now
            elif tokens and debt >= tokens.window:
                refused, retry = TOKENS, debt - tokens.window + tokens.interval
            elif self._global is not None:
                gnew = max(self._tat.get(glb, now), now) + self._global.interval
                if gnew - now > self._global.period + _EPS:
                    refused, retry = GLOBAL, gnew - self._global.period - now
                else:
                    self._tat[glb] = gnew
            if refused is None:
                self._tat[req] = new
                tat = new
        return Decision(
            allowed=refused is None, refused_by=refused, limit=max(1, math.floor(rate.burst)),
            remaining=_remaining(rate, tat - now), reset=tat - now,
            retry_after=retry, **_token_state(tokens, debt), shared=False)

    def debit(self, client_id: str, tier_name: str, tokens_used: int) -> None:
        """Count an answer's tokens against the client's tokens-per-minute allowance."""
        tokens = self._tiers[tier_name].tokens
        if tokens is None or tokens_used <= 0:
            return
        key = "t:" + client_id
        with self._lock:
            now = self._clock()
            self._tat[key] = max(self._tat.get(key, now), now) + tokens_used * tokens.interval


def _remaining(rate: Rate, debt: float) -> int:
    return max(0, math.floor((rate.period - debt) / rate.interval + _EPS))


def _token_state(tokens: TokenRate | None, debt: float) -> dict[str, float | int | None]:
    if tokens is None:
        return {}
    left = max(0, math.floor((tokens.window - debt) / tokens.interval + _EPS))
    return {"token_limit": tokens.per_minute, "token_remaining": left, "token_reset": debt}

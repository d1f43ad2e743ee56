"""A worker's lease on a fast client's requests: one Redis round trip admits several.

Checking every request in Redis costs a round trip each (about half of an
L1 cache hit's CPU). For a client whose limit is high, a worker instead asks
the shared limiter for a small batch of admissions at once and hands them out
locally until the batch is spent or ``window`` seconds have passed.

Why limits still hold across workers and replicas: Redis counts a batch the
moment it is leased, so the sum admitted everywhere never exceeds the limit.
What a batch can cost is the other way round: admissions leased by one worker
and not yet used are unavailable to the others for at most ``window``, and are
handed back to Redis (``REFUND``) with the worker's next lease.

The batch size adapts to the demand this worker sees: it starts at one (the
exact per-request check), doubles while batches run out within the window, and
falls to what was actually used when a batch expires half spent, never above
``cap`` (the tier's limit x ``window``: 50 ms of its rate by default). A tier
whose cap is one is always checked request by request.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from app.limits.decision import Decision
from app.limits.policy import TokenRate


class Lease:
    """Admissions one worker holds for one client; guarded by its own lock."""

    __slots__ = ("expires", "granted", "granted_at", "left", "lock", "size", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.left = 0  # admissions still to hand out
        self.granted = 0  # size of the current batch
        self.size = 0  # what the last renewal asked for
        self.expires = 0.0
        self.granted_at = 0.0
        self.state: Decision | None = None  # Redis's answer to the renewal: the client's state after the grant

    def take(self, now: float) -> bool:
        """Hand out one admission from the batch, if it is still valid."""
        if self.left > 0 and now < self.expires:
            self.left -= 1
            return True
        return False

    def renewal(self, cap: int) -> tuple[int, int]:
        """(batch size to ask for, unused admissions to hand back), from how the last batch went."""
        refund = self.left
        if self.granted == 0:
            size = 1
        elif refund > 0:
            size = max(1, self.granted - refund)  # expired half spent: ask for what was used
        else:
            size = self.size * 2  # spent within the window: demand is higher
        self.left = self.granted = 0
        return max(1, min(cap, size)), refund

    def grant(self, admitted: int, asked: int, state: Decision, now: float, window: float) -> None:
        """Record a batch Redis admitted; the caller uses one of them at once."""
        self.granted, self.size, self.state = admitted, asked, state
        self.left = admitted - 1
        self.granted_at, self.expires = now, now + window

    def decision(self, now: float) -> Decision:
        """The state after the grant, less what this worker handed out since, and aged by the time passed."""
        s = self.state
        assert s is not None
        aged = now - self.granted_at
        return Decision(allowed=True, refused_by=None, limit=s.limit,
                        remaining=min(s.limit, s.remaining + self.left),
                        reset=max(0.0, s.reset - aged), retry_after=0.0, token_limit=s.token_limit,
                        token_remaining=s.token_remaining,
                        token_reset=None if s.token_reset is None else max(0.0, s.token_reset - aged))

    def debit_tokens(self, tokens: TokenRate, used: int) -> None:
        """Count an answer's tokens in the batch's state; a spent allowance ends the batch, so Redis decides."""
        s = self.state
        if s is None or s.token_remaining is None:
            return
        left = max(0, s.token_remaining - used)
        self.state = replace(s, token_remaining=left, token_reset=(s.token_reset or 0.0) + used * tokens.interval)
        if left == 0:
            self.expires = 0.0

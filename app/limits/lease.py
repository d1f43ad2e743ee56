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

import operator
import threading
from collections.abc import Iterator
from dataclasses import replace

from app.limits.decision import Decision
from app.limits.policy import TokenRate


class Lease:
    """Admissions one worker holds for one client.

    Taking one needs no lock: the batch is an iterator of tickets, and ``next`` on it is one step the GIL
    never splits. ``lock`` guards the rest (starting a renewal, granting, token debits), never across
    I/O: a thread holding a lock while it waits for the GIL after a system call makes every thread
    queued on that lock wait behind it, one GIL wait after another.
    """

    __slots__ = ("expires", "granted", "granted_at", "lock", "renewing", "size", "state", "tickets")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tickets: Iterator[int] = iter(())  # admissions still to hand out
        self.granted = 0  # size of the current batch
        self.size = 0  # what the last renewal asked for
        self.expires = 0.0
        self.granted_at = 0.0
        self.state: Decision | None = None  # Redis's answer to the renewal: the client's state after the grant
        self.renewing: threading.Event | None = None  # set when the renewal in flight has its answer

    @property
    def left(self) -> int:
        return operator.length_hint(self.tickets)

    def take(self, now: float) -> bool:
        """Hand out one admission from the batch, if it is still valid (no lock needed)."""
        return now < self.expires and next(self.tickets, None) is not None

    def renewal(self, cap: int) -> tuple[int, int]:
        """(batch size to ask for, unused admissions to hand back), from how the last batch went. Lock held.

        The unused tickets are drained in one step (``list`` of the iterator), so none is both handed
        back and taken by a thread that checked the batch's expiry a moment earlier."""
        self.tickets, unused = iter(()), self.tickets
        refund = len(list(unused))
        if self.granted == 0:
            size = 1
        elif refund > 0:
            size = max(1, self.granted - refund)  # expired half spent: ask for what was used
        else:
            size = self.size * 2  # spent within the window: demand is higher
        self.granted = 0
        return max(1, min(cap, size)), refund

    def grant(self, admitted: int, asked: int, state: Decision, now: float, window: float) -> None:
        """Record a batch Redis admitted; the caller uses one of them at once."""
        self.granted, self.size, self.state = admitted, asked, state
        self.granted_at, self.expires = now, now + window
        self.tickets = iter(range(admitted - 1))

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

"""A circuit breaker per provider: stop calling one that keeps failing, and notice when it is back.

    closed ──(N failures in a row, or failure rate over the window)──► open
    open ──(cooldown over)──► half-open: exactly one attempt, the probe, goes
    half-open ──probe succeeds──► closed        half-open ──probe fails──► open

While open, attempts are refused at once: the pipeline falls back to the next
target or answers 503 with ``retry-after`` (the cooldown left), so a dead
provider costs callers microseconds instead of a timeout each. Breakers are
per provider and independent: one provider's open breaker never touches
another's traffic.

State is per gunicorn worker (no lock or I/O shared between processes on the
hot path): each worker learns of an outage from its own failed attempts and
probes on its own. ``llm_edge_circuit_breaker_state`` is a ``livemax`` gauge,
so it shows the worst worker.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.config.settings import Settings
from app.health import Check

CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the gauge's values
STATE_NAMES = ("closed", "half-open", "open")

Permit = int  # the breaker generation an attempt was let through in; outcomes from older ones are ignored
Publish = Callable[[str, int], None]

_BUCKETS = 10  # the failure-rate window is kept as this many time slices


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a provider's breaker opens and how long it stays open; shared by every breaker."""

    failure_threshold: int = 5  # failed attempts in a row that open it; 0 turns the rule off
    failure_rate: float = 0.5  # share of failed attempts in the window that opens it; 0 turns the rule off
    min_requests: int = 20  # attempts the window must hold before the rate counts
    window: float = 60.0  # seconds of history for the rate
    cooldown: float = 30.0  # seconds open before one probe is let through

    @classmethod
    def from_settings(cls, s: Settings) -> BreakerPolicy:
        return cls(failure_threshold=s.breaker_failure_threshold, failure_rate=s.breaker_failure_rate,
                   min_requests=s.breaker_min_requests, window=s.breaker_window, cooldown=s.breaker_cooldown)


class CircuitBreaker:
    """Thread-safe breaker for one provider in one worker. See the module docstring for the states."""

    def __init__(self, name: str, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic,
                 publish: Publish | None = None, count_successes: bool = True) -> None:
        self.name = name
        self.policy = policy
        # False: a success in the closed state is not counted in the window, only ends a run of failures. For a
        # breaker with the rate rule off whose window nobody shows (the Redis guard's), where a success is then
        # the common case and costs no lock (a lock taken and given back is ~2,000 instructions).
        self._count_successes = count_successes or policy.failure_rate > 0
        self._clock = clock
        self._publish = publish
        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0
        self._consecutive = 0
        self._open_until = 0.0
        self._probing = False
        self._width = policy.window / _BUCKETS
        self._slot_ids = [-1] * _BUCKETS
        self._ok = [0] * _BUCKETS
        self._failed = [0] * _BUCKETS
        self.times_opened = 0

    # ---- the two calls an attempt makes

    def allow(self) -> Permit | None:
        """A permit for one attempt, or None while open (or while the half-open probe is out)."""
        generation = self._generation  # closed, the common case, needs no lock: read the generation first, so
        if self._state == CLOSED:  # a change of state in between leaves a permit from before it (ignored)
            return generation
        changed = None
        with self._lock:
            if self._state == CLOSED:
                return self._generation
            if self._state == OPEN:
                if self._clock() < self._open_until:
                    return None
                changed = self._move(HALF_OPEN)
            if self._probing:
                permit = None
            else:
                self._probing = True
                permit = self._generation
        if changed is not None:  # (most calls change nothing: no call to say so)
            self._tell(changed)
        return permit

    def record(self, permit: Permit, ok: bool | None) -> None:
        """The outcome of a permitted attempt: True healthy, False failed, None says nothing (e.g. 429)."""
        if ok and not self._count_successes and self._consecutive == 0 and self._state == CLOSED:
            return  # nothing to change (a failure being counted meanwhile is counted as if after this success)
        changed = None
        with self._lock:
            if permit != self._generation:
                return  # let through before the last change of state: it says nothing about now
            if self._state == HALF_OPEN:
                self._probing = False
                if ok is not None:
                    changed = self._move(CLOSED if ok else OPEN)
            elif self._state == CLOSED and ok is not None:
                now = self._clock()
                self._count(ok, now)
                if not ok and self._tripped(now):
                    changed = self._move(OPEN)
        if changed is not None:
            self._tell(changed)

    # ---- what others read

    @property
    def state(self) -> int:
        """Closed, half-open or open; an open breaker whose cooldown is over reads as half-open."""
        changed = None
        with self._lock:
            if self._state == OPEN and self._clock() >= self._open_until:
                changed = self._move(HALF_OPEN)
            state = self._state
        self._tell(changed)
        return state

    def retry_after(self) -> float:
        """Seconds until a probe may go (0 unless open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def snapshot(self) -> dict[str, object]:
        state = self.state
        with self._lock:
            requests, failures = self._totals(self._clock())
            return {"state": STATE_NAMES[state], "consecutive_failures": self._consecutive,
                    "window": {"attempts": requests, "failures": failures},
                    "times_opened": self.times_opened,
                    "retry_in": round(max(0.0, self._open_until - self._clock()), 3) if state == OPEN else 0}

    # ---- internals (lock held)

    def _move(self, state: int) -> int:
        self._state = state
        self._generation += 1
        self._probing = False
        if state == OPEN:
            self._open_until = self._clock() + self.policy.cooldown
            self.times_opened += 1
        elif state == CLOSED:
            self._consecutive = 0
            self._slot_ids = [-1] * _BUCKETS
        return state

    def _count(self, ok: bool, now: float) -> None:
        idx = int(now // self._width)
        slot = idx % _BUCKETS
        if self._slot_ids[slot] != idx:
            self._slot_ids[slot], self._ok[slot], self._failed[slot] = idx, 0, 0
        if ok:
            self._ok[slot] += 1
            self._consecutive = 0
        else:
            self._failed[slot] += 1
            self._consecutive += 1

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = int(now // self._width) - _BUCKETS + 1
        requests = failures = 0
        for slot, idx in enumerate(self._slot_ids):
            if idx >= oldest:
                requests += self._ok[slot] + self._failed[slot]
                failures += self._failed[slot]
        return requests, failures

    def _tripped(self, now: float) -> bool:
        p = self.policy
        if p.failure_threshold and self._consecutive >= p.failure_threshold:
            return True
        if p.failure_rate > 0:
            requests, failures = self._totals(now)
            return requests >= max(1, p.min_requests) and failures >= p.failure_rate * requests
        return False

    def _tell(self, changed: int | None) -> None:
        if changed is not None and self._publish is not None:
            self._publish(self.name, changed)


class Breakers:
    """This worker's breakers, one per provider, made up front so the gauge lists every provider."""

    def __init__(self, names: Iterable[str], policy: BreakerPolicy, *,
                 clock: Callable[[], float] = time.monotonic, publish: Publish | None = None) -> None:
        self.policy = policy
        self._clock = clock
        self._publish = publish
        self._lock = threading.Lock()
        self._by_name: dict[str, CircuitBreaker] = {}
        for name in names:
            self[name]

    def __getitem__(self, name: str) -> CircuitBreaker:
        breaker = self._by_name.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._by_name.get(name)
                if breaker is None:
                    breaker = CircuitBreaker(name, self.policy, clock=self._clock, publish=self._publish)
                    self._by_name[name] = breaker
                    if self._publish is not None:
                        self._publish(name, CLOSED)
        return breaker

    def health(self) -> Check:
        """``degraded`` while any provider's breaker is not closed; per-provider detail for /health."""
        detail = {name: b.snapshot() for name, b in sorted(self._by_name.items())}
        worst = max((b.state for b in self._by_name.values()), default=CLOSED)
        return Check("ok" if worst == CLOSED else "degraded", {"worker_pid": os.getpid(), "providers": detail})

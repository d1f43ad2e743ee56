"""Per-client spend in US cents, per UTC day and month: what budgets are checked against.

``add`` is on the request path, so it only adds to an in-process tally (a
dict under a lock); a background thread moves the tally to Redis once a second
in one pipelined round trip (``INCRBYFLOAT`` + ``EXPIRE`` per key), so every
worker and replica sharing that Redis sees one total. ``spent`` reads Redis
at most once per ``max_age`` per key and adds what this process has not sent
yet. While Redis is unreachable (or not configured) amounts stay in the
tally, ``spent`` answers from the last known total plus the tally, and the
tally reaches Redis when it is back: spend is delayed, never lost.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from app.process_id import current_pid
from app.resilience.redis_guard import RedisGuard

log = logging.getLogger("llm_edge.spend")

Period = Literal["day", "month"]
PERIODS: tuple[Period, ...] = ("day", "month")
# Keys outlive their period a little so a late reader still finds yesterday's or last month's total.
_TTL_SECONDS = {"day": 3 * 86400, "month": 40 * 86400}


# (UTC day number, its day bucket, its month bucket), swapped as one tuple: safe across threads.
_buckets: tuple[int, str, str] = (-1, "", "")


def period_bucket(period: Period, now: float) -> str:
    """The UTC day (2026-11-26) or month (2026-11) that ``now`` falls in.

    Formatted once per UTC day, not twice per answered request (POSIX days are exactly 86,400 s).
    """
    global _buckets
    day = int(now // 86400)
    buckets = _buckets
    if buckets[0] != day:
        utc = time.gmtime(now)
        buckets = _buckets = (day, time.strftime("%Y-%m-%d", utc), time.strftime("%Y-%m", utc))
    if period == "day":
        return buckets[1]
    if period == "month":
        return buckets[2]
    raise ValueError(f"unknown spend period {period!r}; expected one of {PERIODS}")


class SpendLedger:
    def __init__(self, guard: RedisGuard, *, prefix: str = "llm-edge:spend", flush_interval: float = 1.0,
                 max_age: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.prefix = prefix
        self.flush_interval = flush_interval
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}  # key -> cents added here, not yet in Redis
        self._known: dict[str, tuple[float, float]] = {}  # key -> (Redis total, when read)
        self._flusher_pid: int | None = None
        self._stop = threading.Event()

    def key(self, client_id: str, period: Period, now: float | None = None) -> str:
        """``{client}`` is a Redis Cluster hash tag: one client's keys live on one shard."""
        bucket = period_bucket(period, self._clock() if now is None else now)
        return f"{self.prefix}:{{{client_id}}}:{period}:{bucket}"

    def add(self, client_id: str, cents: float) -> None:
        """Count ``cents`` against ``client_id`` for the current day and month. Never blocks on I/O."""
        if cents <= 0:
            return
        now = self._clock()
        keys = [self.key(client_id, period, now) for period in PERIODS]
        with self._lock:
            for k in keys:
                self._pending[k] = self._pending.get(k, 0.0) + cents
        if self._flusher_pid != current_pid():
            self._start_flusher()

    def spent(self, client_id: str, period: Period = "month") -> float:
        """Cents spent by ``client_id`` in the current ``period``, across every process sharing Redis."""
        now = self._clock()
        k = self.key(client_id, period, now)
        with self._lock:
            known = self._known.get(k)
        if known is None or now - known[1] >= self.max_age:
            raw = self.guard.call("spend_read", lambda r: r.get(k), fallback=_UNREAD)
            if raw is not _UNREAD:
                known = (float(raw or 0.0), now)
                with self._lock:
                    self._known[k] = known
        with self._lock:
            return (known[0] if known else 0.0) + self._pending.get(k, 0.0)

    def flush(self) -> bool:
        """Move the tally to Redis in one round trip; False (tally kept) when Redis cannot take it."""
        with self._lock:
            batch = list(self._pending.items())
        if not batch:
            return True
        if not self.guard.enabled:
            return False

        def write(r):  # type: ignore[no-untyped-def]
            pipe = r.pipeline(transaction=False)
            for k, cents in batch:
                pipe.incrbyfloat(k, cents)
                pipe.expire(k, _TTL_SECONDS[k.rsplit(":", 2)[1]])
            return pipe.execute()

        result = self.guard.call("spend_write", write, fallback=None)
        if result is None:
            return False
        now = self._clock()
        with self._lock:
            for i, (k, cents) in enumerate(batch):
                left = self._pending.get(k, 0.0) - cents
                if left > 1e-9:
                    self._pending[k] = left
                else:
                    self._pending.pop(k, None)
                self._known[k] = (float(result[2 * i]), now)
            self._forget_old(now)
        return True

    def _forget_old(self, now: float) -> None:
        """Drop cached totals of past days and months (pending ones stay until they reach Redis)."""
        current = {period_bucket(p, now) for p in PERIODS}
        for k in [k for k in self._known if k.rsplit(":", 1)[1] not in current]:
            del self._known[k]

    def _start_flusher(self) -> None:
        """One flusher thread per process, started after fork by the first ``add``."""
        with self._lock:
            if self._flusher_pid == current_pid():
                return
            self._flusher_pid = current_pid()
        threading.Thread(target=self._run, name="spend-flusher", daemon=True).start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # never let accounting kill its thread
                log.exception("spend flush failed")

    def close(self) -> None:
        """Stop the flusher and make a last attempt to send the tally (worker exit)."""
        self._stop.set()
        self.flush()


_UNREAD = object()

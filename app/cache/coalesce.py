"""Request coalescing in one worker: identical concurrent misses share one upstream call.

The first request to miss a key becomes the *leader* of a ``Flight`` and
does the work (L2 lookup, then upstream); requests that miss the same key
while the flight is open *follow* it instead of calling upstream:

* a JSON follower waits for the leader's complete answer;
* a streaming follower replays the leader's stream live, event by event,
  from the first event on (or the whole answer as a stream, when the leader
  was a JSON request or an L2 hit).

If the leader fails before it has an answer, JSON followers and streaming
followers that have not seen an event yet call upstream themselves (one
failed attempt is not shared out); a stream that fails after it started
ends each following stream with an error event, as the leader's own does.
Waiting is bounded by each follower's request deadline.

Across workers and replicas nothing is coalesced: the worst case is one
upstream call per worker for a burst of identical misses (docs/cache.md, "Request coalescing").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from app.cache.entry import CachedAnswer
from app.errors import UpstreamError, UpstreamTimeout
from app.formats.canonical import StreamEvent

_RUNNING, _DONE, _FAILED = 0, 1, 2


class Flight:
    """One in-progress answer for a key: its stream events so far, then the answer or a failure."""

    __slots__ = ("_cond", "_events", "_on_end", "_state", "add", "answer", "origin", "tier", "waiting")

    def __init__(self, on_end: Callable[[Flight], None]) -> None:
        # Its own RLock: given a plain Lock, Condition() probes it for three RLock methods and catches
        # an AttributeError for each, on every miss.
        self._cond = threading.Condition(threading.RLock())
        self._events: list[StreamEvent | bytes] = []
        # The leader's publish, for a loop that runs once per event: ``add(event)``, then ``wake()`` when
        # ``waiting`` (followers inside ``_wait``: only they need a wake-up).
        self.add = self._events.append
        self.waiting = 0
        self._state = _RUNNING
        self._on_end = on_end
        self.answer: CachedAnswer | None = None
        self.tier = "miss"  # how the leader got the answer: miss (upstream), hit-l1 or hit-l2
        self.origin: tuple[str, str] | None = None  # provider and model of a live stream

    # --- the leader's side ---------------------------------------------------

    def publish(self, event: StreamEvent) -> None:
        """One more event; the condition is taken only when a follower waits (most streams have none).

        No wake-up is lost: a follower counts itself in ``waiting`` before it looks at the events, and
        holds the condition until it waits; the event is appended before the count is read.
        """
        self.add(event)
        if self.waiting:
            self.wake()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finish(self, answer: CachedAnswer, tier: str = "miss") -> None:
        self._end(_DONE, answer, tier)

    def fail(self) -> None:
        self._end(_FAILED, None, "miss")

    def _end(self, state: int, answer: CachedAnswer | None, tier: str) -> None:
        with self._cond:
            if self._state != _RUNNING:
                return
            self._state, self.answer, self.tier = state, answer, tier
            if self.waiting:  # a follower in _wait (counted under this condition); most flights have none
                self._cond.notify_all()
        self._on_end(self)

    # --- the followers' side -------------------------------------------------

    def _wait(self, ready: Callable[[], bool], deadline: float) -> None:
        """Wait (holding the condition) until ``ready()``; the request's deadline bounds it."""
        self.waiting += 1
        try:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout("Timed out waiting for an identical request in progress")
                self._cond.wait(remaining)
        finally:
            self.waiting -= 1

    def wait_answer(self, deadline: float) -> CachedAnswer | None:
        """The leader's complete answer, or ``None`` if it failed."""
        with self._cond:
            self._wait(lambda: self._state != _RUNNING, deadline)
            return self.answer

    def wait_started(self, deadline: float) -> str:
        """``live`` once the leader's stream has an event, else ``done`` or ``failed``."""
        with self._cond:
            self._wait(lambda: bool(self._events) or self._state != _RUNNING, deadline)
            if self._events:
                return "live"
            return "done" if self._state == _DONE else "failed"

    def follow(self, deadline: float) -> Iterator[StreamEvent]:
        """The leader's stream events from the first, as they come (after ``wait_started`` said live)."""
        seen = 0
        while True:
            with self._cond:
                self._wait(lambda seen=seen: len(self._events) > seen or self._state != _RUNNING, deadline)
                batch = self._events[seen:]
                state = self._state
            seen += len(batch)
            yield from batch
            if batch:
                continue
            if state == _FAILED:
                raise UpstreamError("The identical request this stream was following failed")
            return


class Coalescer:
    """The worker's open flights by cache key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}

    def join(self, key: str) -> tuple[Flight, bool]:
        """The key's flight and whether the caller leads it (``True``: it must finish or fail it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = Flight(lambda done: self._remove(key, done))
            self._flights[key] = flight
            return flight, True

    def _remove(self, key: str, flight: Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)

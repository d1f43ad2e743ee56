"""Write-behind for L2 fills under concurrency: queued fills are written in batches by one thread per worker.

Why: a fill is a Redis round trip that the caller waits for and gains nothing
from (its own worker already has the answer in L1). When no other fill is in
flight, the request thread sends its fill itself (once its answer is out:
``app/http/app.py``) on its own connection and does not wait for the
reply (``RedisGuard.send``: the reply is read before that thread's next
command); handing it to another thread would cost a thread wake-up and a GIL
hand-off, which on the benchmark's VM cost more than the round trip. When
fills overlap, the later
ones are queued and written behind in one pipeline (one round trip and one
syscall pair for many fills), and their requests do not wait for Redis.
The price: another worker or replica may see such an entry a moment later
(about one round trip), and fills still queued when a worker is killed
outright are lost. ``L2_WRITE_BEHIND=false`` makes every fill synchronous.

The queue is bounded: when Redis cannot keep up, new fills are dropped (and
counted), never the request slowed. The writer thread starts with the first
fill, so it always belongs to the process that uses it (never across a fork).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque

import redis

from app.observability import metrics
from app.resilience.redis_guard import RedisGuard

Fill = tuple[str, bytes, int]  # key, stored bytes, seconds to live


class FillWriter:
    def __init__(self, guard: RedisGuard, *, max_pending: int = 10_000, max_batch: int = 256) -> None:
        self.guard = guard
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._pending: deque[Fill] = deque()
        self._lock = threading.Lock()
        # Two conditions on one lock, each notified only when someone waits on it: a wake-up is a
        # system call, and waking the writer for nothing cost 13% of a worker's GIL time (py-spy).
        self._work = threading.Condition(self._lock)  # the writer thread waits here for fills
        self._idle = threading.Condition(self._lock)  # flush() waits here for the queue to empty
        self._writer_waiting = False
        self._flushers = 0
        self._in_flight = 0  # batches being written, by request threads or the writer thread
        self._thread: threading.Thread | None = None

    def submit(self, key: str, data: bytes, seconds: int) -> bool:
        """Write one fill now if no other is in flight, else queue it; ``False`` when dropped (queue full)."""
        fill = (key, data, seconds)
        with self._lock:
            if self._in_flight == 0 and not self._pending:
                self._in_flight += 1
            else:
                if len(self._pending) >= self.max_pending:
                    metrics.REDIS_ERRORS.labels("cache_set", "dropped").inc()
                    return False
                self._pending.append(fill)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="l2-fill-writer", daemon=True)
                    self._thread.start()
                    atexit.register(self.flush)
                elif self._writer_waiting:
                    self._work.notify()
                return True
        self._write_counted([fill])
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._writer_waiting = True
                    self._work.wait()
                    self._writer_waiting = False
                self._in_flight += 1
                batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._write_counted(batch)

    def _write_counted(self, batch: list[Fill]) -> None:
        try:
            self._write(batch)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._flushers:
                    self._idle.notify_all()

    def _write(self, batch: list[Fill]) -> None:
        if len(batch) == 1:  # a lone fill: one SET on this thread's own connection, its reply read later
            key, data, seconds = batch[0]
            self.guard.send("cache_set", "SET", key, data, "EX", seconds)
            return

        def send(client: redis.Redis) -> bool:
            pipe = client.pipeline(transaction=False)
            for key, data, seconds in batch:
                pipe.set(key, data, ex=seconds)
            pipe.execute()
            return True

        self.guard.call("cache_set", send, False)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every queued fill is written (or given up on); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flushers += 1
            try:
                while self._pending or self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._idle.wait(left)
            finally:
                self._flushers -= 1
        return True

"""Whether this worker is draining (SIGTERM), read by readiness; and the end of its streams.

Set from the SIGTERM path (gunicorn.conf.py hooks) and read by readiness, so
a load balancer stops sending traffic while in-flight requests finish.

gunicorn gives in-flight requests ``graceful_timeout`` seconds, then kills
the worker: a stream still running would be cut mid-body, a broken chunked
answer the client cannot tell from a network fault. So streams hold a place
here (``hold_stream``), and a little before that deadline (``cut_streams_after``)
each is told to end with an error event in its own format.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("llm_edge.draining")


class DrainState:
    def __init__(self) -> None:
        self._draining = threading.Event()
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._streams: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self, cut_streams_after: float | None = None) -> None:
        """Readiness turns 503; streams still running ``cut_streams_after`` seconds later are ended."""
        self._draining.set()
        if cut_streams_after is not None:
            timer = threading.Timer(max(0.0, cut_streams_after), self.cut_streams)
            timer.daemon = True
            timer.start()

    def hold_stream(self, on_cut: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_cut`` (from another thread) when streams are cut; returns the function to let go."""
        with self._lock:
            if not self._cut.is_set():
                key = next(self._ids)
                self._streams[key] = on_cut

                def release() -> None:
                    with self._lock:
                        self._streams.pop(key, None)

                return release
        on_cut()  # started after the cut: end it at once
        return _nothing

    def cut_streams(self) -> None:
        with self._lock:
            self._cut.set()
            callbacks = list(self._streams.values())
            self._streams.clear()
        if callbacks:
            log.warning("drain deadline: ending %d stream(s) still in flight with an error event", len(callbacks))
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("ending a stream at the drain deadline failed")


def _nothing() -> None:
    return None

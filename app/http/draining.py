"""Whether this worker is draining (SIGTERM), read by readiness.

Set from the SIGTERM path (gunicorn.conf.py hooks) and read by readiness, so
a load balancer stops sending traffic while in-flight requests finish.
"""

from __future__ import annotations

import threading


class DrainState:
    def __init__(self) -> None:
        self._draining = threading.Event()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self) -> None:
        self._draining.set()

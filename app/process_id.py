"""This process's id, asked of the kernel once per process instead of at every use.

``os.getpid()`` is a system call, and the hot path wanted it on every access
line and every spend tally (and once on every metric update, until the metric
values learned of forks from ``os.register_at_fork`` themselves,
``app/patches/prometheus_client.py``). The remembered id is renewed in every
forked child (``os.register_at_fork``), so code that compares it to notice a
fork still does.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    return _pid

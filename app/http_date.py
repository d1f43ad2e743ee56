"""The HTTP ``Date`` header's text, formatted once a second instead of once a response.

gunicorn builds every response's ``Date`` with ``email.utils.formatdate``
(``gunicorn.util.http_date``): 5% of a worker's GIL samples on an L1 hit at
c=1 (py-spy), for text that changes once a second. app/gunicorn_trims.py installs
``http_date`` in its place; the text is the same, byte for byte.
"""

from __future__ import annotations

import email.utils
import time

# (whole second, its text), swapped as one tuple: safe across threads.
_cached: tuple[int, str] = (-1, "")


def http_date(timestamp: float | None = None) -> str:
    """``gunicorn.util.http_date``: IMF-fixdate (RFC 9110), e.g. ``Thu, 26 Nov 2026 13:00:00 GMT``."""
    global _cached
    now = time.time() if timestamp is None else timestamp
    second = int(now // 1)
    cached = _cached
    if cached[0] != second:
        cached = _cached = (second, email.utils.formatdate(second, localtime=False, usegmt=True))
    return cached[1]

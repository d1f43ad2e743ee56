"""urllib3's transport hot path, trimmed: what the worker's upstream ``PoolManager`` gets, in one place.

Two users, one list (as ``app/gunicorn_trims.py`` for gunicorn): the
gateway's ``UpstreamHTTP`` and the benchmark's passthrough floor, so that the
floor pays the same transport costs as the gateway and the ratios price only
gateway work. A trim added here reaches both.
"""

from __future__ import annotations

import urllib3

from app.providers import headers
from app.providers.one_write import POOL_CLASSES


def install(pool: urllib3.PoolManager) -> urllib3.PoolManager:
    """Each request's head and body in one write (``one_write.py``) and response headers read without the
    email parser (``headers.py``, process-wide); returns ``pool``."""
    pool.pool_classes_by_scheme = POOL_CLASSES
    headers.install()
    return pool

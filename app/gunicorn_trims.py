"""gunicorn's transport hot path, trimmed: the patches of gunicorn itself, made once in the master.

Two users, one list: gunicorn.conf.py installs them for the gateway (every
forked worker inherits them), and the benchmark's floor apps install them
too, so that the floors pay the same transport costs as the gateway and the
ratios price only gateway work. A trim added here reaches both.
"""

from __future__ import annotations

import gunicorn.util

from app import response_write
from app.http_date import http_date


def install() -> bool:
    """The Date header's text once a second (app/http_date.py) and each answer's head and first chunk in
    one write (app/response_write.py); ``False`` when the latter declined this gunicorn."""
    gunicorn.util.http_date = http_date
    return response_write.install()

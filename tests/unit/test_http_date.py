"""The Date header formatted once a second reads exactly as gunicorn's own, every second of the year."""

from __future__ import annotations

import email.utils
import random
import time

import urllib3

from app.patches import gunicorn as module
from app.patches.gunicorn import http_date
from tests.support.processes import after_gunicorn_conf


def gunicorns(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, localtime=False, usegmt=True)


def test_the_same_text_as_email_utils_for_any_moment():
    rng = random.Random(7)
    start = 1_795_000_000.0  # late 2026
    moments = [start + rng.uniform(0, 400 * 86400) for _ in range(3000)]
    moments += [1_798_761_599.999, 1_798_761_600.0, 1_709_164_800.5, 0.0]  # New Year 2027, leap day 2024, epoch
    for moment in moments:
        assert http_date(moment) == gunicorns(moment), moment


def test_now_by_default_and_remembered_within_the_second(monkeypatch):
    clock = [1_798_761_599.2]
    monkeypatch.setattr(module.time, "time", lambda: clock[0])
    assert http_date() == "Thu, 31 Dec 2026 23:59:59 GMT"
    clock[0] = 1_798_761_599.9
    assert http_date() == "Thu, 31 Dec 2026 23:59:59 GMT"
    clock[0] = 1_798_761_600.0
    assert http_date() == "Fri, 01 Jan 2027 00:00:00 GMT"


def test_a_live_gateway_sends_it(gateway):
    resp = urllib3.PoolManager().request("GET", gateway.url + "/health/live")
    sent = email.utils.parsedate_to_datetime(resp.headers["date"]).timestamp()
    assert abs(sent - time.time()) < 5
    assert resp.headers["date"] == gunicorns(sent)


def test_gunicorn_conf_installs_it_for_every_worker(tmp_path):
    """gunicorn.conf.py runs in the master before the fork: gunicorn's own function must be ours there."""
    done = after_gunicorn_conf("import gunicorn.util, app.patches.gunicorn\n"
                               "assert gunicorn.util.http_date is app.patches.gunicorn.http_date", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

"""``UpstreamAbort``: another thread cuts a request's upstream call, and never a connection it gave back.

Over real HTTP against the emulator, with the gateway's pools as ``UpstreamHTTP`` builds them.
"""

from __future__ import annotations

import threading
import time

import pytest

from app.errors import UpstreamError
from app.providers.http import UpstreamAbort, UpstreamHTTP
from app.resilience.disconnects import ClientGone
from tests.conftest import Fault
from tests.integration.test_upstream_deadlines import HEADERS, body, deadline_from

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def http() -> UpstreamHTTP:
    return UpstreamHTTP(connect_timeout=1.0, pool_maxsize=4)


def post(http: UpstreamHTTP, url: str, abort: UpstreamAbort):
    return http.post("openai", url, HEADERS, body(False), read_timeout=10, deadline=deadline_from(10), abort=abort)


def test_an_abort_before_the_headers_cuts_the_wait(http, upstream):
    upstream.push_faults(Fault(delay=10))
    abort = UpstreamAbort()
    threading.Timer(0.2, abort.abort).start()
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        post(http, upstream.openai_base_url + "/chat/completions", abort)
    assert time.monotonic() - started < 2 and abort.gone


def test_no_attempt_starts_once_aborted(http, upstream):
    abort = UpstreamAbort()
    abort.abort()
    with pytest.raises(ClientGone):
        post(http, upstream.openai_base_url + "/chat/completions", abort)
    assert upstream.count() == 0


def test_an_abort_never_reaches_a_connection_given_back(http, upstream):
    url = upstream.openai_base_url + "/chat/completions"
    abort = UpstreamAbort()
    resp = post(http, url, abort)
    assert http.read_all("openai", resp, read_timeout=5, deadline=deadline_from(5))  # its connection is pooled again
    upstream.push_faults(Fault(delay=0.6))
    threading.Timer(0.2, abort.abort).start()  # late, while another request waits on that connection
    other = post(http, url, UpstreamAbort())
    assert other.status == 200 and http.read_all("openai", other, read_timeout=5, deadline=deadline_from(5))
    assert upstream.count() == 2 and abort.gone

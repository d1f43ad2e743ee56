"""Request ids made without a system call must still be well-formed and distinct, also across forked workers."""

from __future__ import annotations

import os
import re

import pytest

from app.http.middleware import new_request_id

pytestmark = pytest.mark.timeout(10)


def test_ids_are_32_hex_digits_and_do_not_repeat():
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_repeat_its_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker would make first
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != new_request_id()

"""Cache-Control and x-llm-edge-cache-ttl: what each header asks of the cache."""

from __future__ import annotations

import pytest

from app.cache.control import DEFAULT, MAX_TTL_SECONDS, CacheControl
from app.errors import InvalidRequest


@pytest.mark.parametrize("header,lookup,store", [
    (None, True, True),
    ("", True, True),
    ("no-cache", False, True),
    ("No-Cache", False, True),
    ("no-store", False, False),
    ("max-age=0, no-store", False, False),
    ("no-cache, no-store", False, False),
    ("private, max-age=60", True, True),
    ('no-cache="set-cookie"', False, True),
])
def test_cache_control_directives(header, lookup, store):
    control = CacheControl.from_headers(header, None)
    assert (control.lookup, control.store, control.ttl) == (lookup, store, None)


def test_no_headers_share_one_default():
    assert CacheControl.from_headers(None, None) is DEFAULT


def test_ttl_header_sets_the_lifetime_and_zero_means_do_not_store():
    assert CacheControl.from_headers(None, " 120 ") == CacheControl(ttl=120)
    assert CacheControl.from_headers(None, "0") == CacheControl(lookup=True, store=False, ttl=0)
    assert CacheControl.from_headers("no-cache", "30") == CacheControl(lookup=False, store=True, ttl=30)
    assert CacheControl.from_headers(None, str(MAX_TTL_SECONDS)).ttl == MAX_TTL_SECONDS


@pytest.mark.parametrize("value", ["-1", "1.5", "soon", "", str(MAX_TTL_SECONDS + 1)])
def test_a_bad_ttl_is_a_400_naming_the_header(value):
    with pytest.raises(InvalidRequest) as info:
        CacheControl.from_headers(None, value)
    assert info.value.status == 400 and info.value.param == "x-llm-edge-cache-ttl"
    assert "x-llm-edge-cache-ttl" in info.value.message

"""ClientAddress: X-Forwarded-For is believed only from trusted proxies, right-most untrusted hop wins."""

from __future__ import annotations

import pytest

from app.config.trusted_proxies import ClientAddress, parse_allow_list

pytestmark = pytest.mark.timeout(10)


def test_untrusted_peer_is_the_client_whatever_the_header_says():
    addr = ClientAddress(parse_allow_list("127.0.0.1,::1"))
    assert addr("198.51.100.20", "1.2.3.4") == "198.51.100.20"
    assert addr("198.51.100.20", None) == "198.51.100.20"


def test_trusted_peer_passes_on_the_right_most_untrusted_hop():
    addr = ClientAddress(parse_allow_list("10.0.0.0/8,127.0.0.1"))
    assert addr("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    # A client may send its own X-Forwarded-For: the hops our proxies appended are the ones to believe.
    assert addr("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    assert addr("10.9.9.9", "10.1.1.1, 10.2.2.2") == "10.1.1.1"  # only proxies: the first hop
    assert addr("127.0.0.1", " , ") == "127.0.0.1"
    assert addr("127.0.0.1", "not-an-ip") == "not-an-ip"


def test_star_trusts_every_peer_and_ipv6_works():
    addr = ClientAddress(parse_allow_list("*"))
    assert addr("198.51.100.20", "2001:db8::1") == "2001:db8::1"
    assert ClientAddress(parse_allow_list("::1"))("::1", "2001:db8::2") == "2001:db8::2"


def test_bad_entries_are_named():
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        parse_allow_list("127.0.0.1, 10.0.0.1/8")
    assert parse_allow_list("") == ()

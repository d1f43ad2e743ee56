"""The fast header parser gives the very message http.client's email-based parser gives, for any block.

Why: it replaces a stdlib function process-wide, so "the same answer" has to
hold for every input, not just providers' usual headers: the whole object is
compared (headers in order, payload, defects), for hand-picked odd blocks and
for thousands of random ones, and plain blocks must really take the fast path.
"""

from __future__ import annotations

import http.client
import io
import random

import pytest
import urllib3

from app.patches import http_client as headers

STDLIB = headers.STDLIB_PARSE_HEADERS

PROVIDER_BLOCK = (b"Date: Thu, 26 Nov 2026 12:00:00 GMT\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nx-request-id: req_0123\r\n"
                  b"openai-processing-ms: 412\r\nset-cookie: a=1; path=/\r\nset-cookie: b=2; path=/\r\n"
                  b"anthropic-ratelimit-requests-remaining: 49\r\ncf-ray: 8e1f-SJC\r\n\r\n")

ODD_BLOCKS = [
    b"\r\n",  # no headers at all
    b"",  # the connection ended before any header
    b"X-Empty:\r\nX-Blank:   \r\nX-Tabs:\t\tv\t\r\n\r\n",  # empty values, tabs, trailing blanks kept
    b"X-Colon: a:b::c\r\nX-Spaces: a  b  \r\n\r\n",
    b"LF-Only: yes\nOther: too\n\n",
    b"Latin: caf\xe9 \xff\r\n\r\n",  # not ASCII: ISO-8859-1, as http.client decodes it
    b"Folded: first\r\n  second\r\n\tthird\r\nNext: x\r\n\r\n",  # obsolete line folding
    b"  Leading: continuation first\r\nA: b\r\n\r\n",
    b": no name\r\nA: b\r\n\r\n",
    b"No colon here\r\nA: b\r\n\r\n",  # the email parser takes this as the start of a body
    b"From nobody Thu Nov 26\r\nA: b\r\n\r\n",  # a Unix From line
    b"Stray: c\rr\r\nA: b\r\n\r\n",  # a lone CR is a line break to the email parser
    b"Bad Name: v\r\n\r\n",  # a space in the name
    b"A: b\r\nUnended: v",  # the block ends at end of file, mid-line
    b"A: b\r\n\r\nBody: not a header\r\n",  # what follows the blank line is not read
]


def state(msg: http.client.HTTPMessage) -> dict:
    """Everything the message holds; defects (compared by identity) as their type and text."""
    return {**vars(msg), "defects": [(type(d), str(d)) for d in msg.defects]}


def both(block: bytes) -> tuple[http.client.HTTPMessage, http.client.HTTPMessage]:
    return headers.parse_headers(io.BytesIO(block)), STDLIB(io.BytesIO(block))


@pytest.mark.parametrize("block", [PROVIDER_BLOCK, *ODD_BLOCKS])
def test_the_same_message_as_the_email_parser(block):
    fast, slow = both(block)
    assert state(fast) == state(slow)
    assert fast.get_all("set-cookie") == slow.get_all("set-cookie")


def test_plain_blocks_take_the_fast_path_and_odd_ones_do_not():
    lines = PROVIDER_BLOCK.splitlines(keepends=True)
    assert headers.parse_plain(lines) is not None
    for block in (b"Folded: a\r\n b\r\n\r\n", b"No colon\r\n\r\n", b"Stray: c\rr\r\n\r\n"):
        assert headers.parse_plain(block.splitlines(keepends=True)) is None


def random_line(rng: random.Random) -> bytes:
    lead = rng.choice([b"", b"", b"", b" ", b"\t"])
    name = rng.choice([b"A", b"x-b", b"Content-Type", b"", b"Bad Name", b"From", b"caf\xe9"])
    colon = rng.choice([b":", b": ", b":\t", b" :", b""])
    value = b"".join(rng.choice([b"v", b" ", b"\t", b":", b"\xff", b"\r", b"\n", b"x" * 7])
                     for _ in range(rng.randint(0, 6)))
    return lead + name + colon + value + rng.choice([b"\r\n", b"\n", b"\r\n", b"\r"])


def test_random_blocks_parse_the_same():
    rng = random.Random(20261126)
    fast_path = 0
    for _ in range(4000):
        block = b"".join(random_line(rng) for _ in range(rng.randint(0, 4))) + rng.choice([b"\r\n", b"\n", b""])
        fast, slow = both(block)
        assert state(fast) == state(slow), block
        fast_path += headers.parse_plain(headers._read_headers(io.BytesIO(block))) is not None
        ours, theirs = io.BytesIO(block), io.BytesIO(block)
        headers.parse_headers(ours)
        STDLIB(theirs)
        assert ours.read() == theirs.read(), block  # both stop reading at the same byte
    assert 400 < fast_path < 3600  # both paths were compared, many times


def test_limits_are_http_clients():
    too_long = b"A: " + b"x" * 70000 + b"\r\n\r\n"
    with pytest.raises(http.client.LineTooLong):
        headers.parse_headers(io.BytesIO(too_long))
    too_many = b"".join(b"H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        headers.parse_headers(io.BytesIO(too_many))


def test_installed_once_and_used_by_urllib3(upstream):
    headers.install()
    assert headers.install()  # again: still ours, still fine
    assert http.client.parse_headers is headers.parse_headers
    resp = urllib3.PoolManager().request("POST", upstream.openai_base_url + "/chat/completions",
                                         body=b'{"model": "gpt-4o-mini", "messages": [{"role": "user", '
                                              b'"content": "hi"}]}',
                                         headers={"content-type": "application/json",
                                                  "authorization": "Bearer sk-test"})
    assert resp.headers["content-type"].startswith("application/json")


def test_someone_elses_parser_is_left_alone(monkeypatch):
    def theirs(fp, _class=http.client.HTTPMessage):
        return STDLIB(fp, _class)

    monkeypatch.setattr(http.client, "parse_headers", theirs)
    assert headers.install() is False
    assert http.client.parse_headers is theirs

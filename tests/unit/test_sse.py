"""The SSE layer: upstream bytes in any chunking give the same events; our encoding parses back."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import UpstreamError
from app.formats.sse import SSEEvent, SSEParser, encode_event


def parse_all(chunks: list[bytes], parser: SSEParser | None = None) -> list[SSEEvent]:
    parser = parser or SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.flush())
    return events


TRANSCRIPT = (
    b": keep-alive comment\n"
    b"event: message_start\n"
    b'data: {"type":"message_start","text":"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"}\n'
    b"\n"
    b"event: ping\r\n"
    b'data: {"type": "ping"}\r\n'
    b"\r\n"
    b"data: first line\r"
    b"data: second line\r"
    b"\r"
    b"id: 7\n"
    b"retry: 1000\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"type":"message_start","text":"héllo € 😀"}'),
    SSEEvent("ping", '{"type": "ping"}'),
    SSEEvent(None, "first line\nsecond line"),
    SSEEvent(None, "[DONE]"),
]


def test_transcript_in_one_chunk() -> None:
    assert parse_all([TRANSCRIPT]) == EXPECTED


def test_transcript_byte_by_byte() -> None:
    assert parse_all([TRANSCRIPT[i : i + 1] for i in range(len(TRANSCRIPT))]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(TRANSCRIPT)))
def test_transcript_split_at_every_byte(cut: int) -> None:
    assert parse_all([TRANSCRIPT[:cut], TRANSCRIPT[cut:]]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(TRANSCRIPT)), max_size=12))
def test_transcript_any_chunking(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(TRANSCRIPT)]
    chunks = [TRANSCRIPT[a:b] for a, b in itertools.pairwise(points)]
    assert parse_all(chunks) == EXPECTED


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A \n right after a chunk ending in \r must not count as a blank line (it would dispatch early).
    assert parse_all([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [SSEEvent(None, "a\nb")]


def test_lone_cr_then_text_in_next_chunk() -> None:
    assert parse_all([b"data: a\r", b"data: b\r\r"]) == [SSEEvent(None, "a\nb")]


def test_utf8_character_split_across_chunks() -> None:
    raw = "data: 😀€\n\n".encode()
    assert parse_all([raw[:7], raw[7:9], raw[9:]]) == [SSEEvent(None, "😀€")]


def test_leading_bom_is_dropped_even_when_split() -> None:
    raw = b"\xef\xbb\xbfdata: x\n\n"
    assert parse_all([raw[:1], raw[1:2], raw[2:]]) == [SSEEvent(None, "x")]
    assert parse_all([raw]) == [SSEEvent(None, "x")]


def test_field_parsing_rules() -> None:
    raw = b"data\ndata:no-space\ndata:  two spaces\nevent:e\nunknown: x\n\n"
    assert parse_all([raw]) == [SSEEvent("e", "\nno-space\n two spaces")]


def test_event_without_data_is_not_dispatched_and_name_resets() -> None:
    raw = b"event: lonely\n\ndata: x\n\n"
    assert parse_all([raw]) == [SSEEvent(None, "x")]


def test_comment_lines_and_blank_lines_alone_give_nothing() -> None:
    assert parse_all([b": hi\n\n\n:another\r\n\r\n"]) == []


def test_flush_delivers_last_event_without_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: message_stop\ndata: {}") == []
    assert parser.flush() == [SSEEvent("message_stop", "{}")]
    assert parser.flush() == []


def test_flush_delivers_pending_event_with_terminated_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.flush() == [SSEEvent(None, "[DONE]")]


def test_flush_of_empty_parser() -> None:
    assert SSEParser().flush() == []


def test_empty_chunks_are_harmless() -> None:
    assert parse_all([b"", b"data: a\r", b"", b"\n", b"", b"\n"]) == [SSEEvent(None, "a")]


def test_line_longer_than_limit_is_upstream_error() -> None:
    parser = SSEParser(max_line_bytes=64)
    parser.feed(b"data: " + b"x" * 50)
    with pytest.raises(UpstreamError):
        parser.feed(b"x" * 50)


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse_all([b"data: \xff\xfe\n\n"]) == [SSEEvent(None, "\ufffd\ufffd")]


def test_encode_event_shapes() -> None:
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_event(b"x", "message_stop") == b"event: message_stop\ndata: x\n\n"
    assert encode_event(b"a\nb") == b"data: a\ndata: b\n\n"
    assert encode_event(b"") == b"data: \n\n"


def test_encode_event_refuses_line_break_in_name() -> None:
    with pytest.raises(ValueError):
        encode_event(b"x", "bad\nname")


@given(st.lists(st.tuples(st.one_of(st.none(), st.from_regex(r"[a-z_]{1,12}", fullmatch=True)),
                          st.text(st.characters(codec="utf-8", exclude_characters="\r"))), max_size=8),
       st.data())
def test_encode_then_parse_round_trips_any_chunking(items: list[tuple[str | None, str]], data: st.DataObject) -> None:
    raw = b"".join(encode_event(text.encode(), name) for name, text in items)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=10))
    points = [0, *sorted(cuts), len(raw)]
    events = parse_all([raw[a:b] for a, b in itertools.pairwise(points)])
    assert events == [SSEEvent(name, text) for name, text in items]

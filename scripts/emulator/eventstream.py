"""AWS event-stream framing, the writing side (botocore has only the reader): Bedrock's stream answers.

A message is ``total length (u32) | headers length (u32) | prelude CRC32 (u32) | headers | payload |
message CRC32 (u32)``, big-endian; CRC32 of the prelude's first 8 bytes, and of everything before the
message CRC. Each header is ``name length (u8) | name | type (u8) | value``; the fake writes only
strings (type 7: ``length (u16) | UTF-8``). tests/unit/test_eventstream.py reads these frames back with
botocore's parser. Reference: https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html
(the framing, as AWS documents it for its streaming APIs).
"""

from __future__ import annotations

import struct
import zlib

_STRING = 7


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    head = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        head += struct.pack(">B", len(raw_name)) + raw_name
        head += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + bytes(head) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(payload: bytes, event_type: str = "chunk") -> bytes:
    return frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                 payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, payload)

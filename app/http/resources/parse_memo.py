"""Exact repeats skip parsing: a body as read (``CallerBody``: its summary, and its canonical request and
translations once made) and its cache keys, remembered by its bytes.

Why: after the framework, the largest costs of a cache hit were parsing and
validating a body this worker had already parsed, and hashing it into the
same cache key again (about a fifth of an L1 hit's instructions). The same
bytes on the same endpoint always parse to the same request, so each
resource keeps the parsed form in a per-worker LRU bounded by entries and
bytes (the L1 cache's class), shared by the worker's threads: nothing changes
a ``ChatRequest`` or the dicts it holds after parsing; what a body learns later
(its canonical parse, its translations, ``CallerBody``) is only added, and two
threads that add it at once add equal values.

A body is kept the second time it is seen, not the first: most bodies are
never repeated, and keeping each one cost a unique request about 2% more
instructions (the insert, evictions and the garbage collector walking the
kept objects); remembering that a body was seen is one small int in an LRU.
Only bodies that were read without error are kept; a body that fails is read, and fails,
again, so every error is exactly what it would be without the memo.

A body too big to keep parsed (a parsed body counts as ``_PARSED_SIZE_FACTOR``
times its bytes, and no entry may take over a quarter of ``MEMO_BYTES``) is
kept as what a cache hit needs: its summary and its cache keys (``Summary``),
counted as its bytes (the entry's key holds them) plus ``SUMMARY_BYTES``. A
hit on it costs hashing and comparing the bytes, not parsing and keying them
(a 1 MB body's hit: ~4 M instructions, against ~29 M); a miss or a translated
target reads the bytes again (``RecalledBody``). Bodies over a quarter of
``MEMO_BYTES`` (2 MiB by default) are not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lru import LRU

from app.cache.l1 import L1Cache
from app.formats.canonical import ChatRequest
from app.formats.relay import CallerBody, RecalledBody

# Per resource and worker. A parsed request takes a few times its body's bytes of memory.
MEMO_ENTRIES = 1024
MEMO_BYTES = 8 * 1024 * 1024
_PARSED_SIZE_FACTOR = 4
# A body repeated by many clients gets a key per scope; past this many, the rest are derived each time.
MAX_KEYS_PER_BODY = 16
# A ``Summary`` past its body's bytes, with all its keys: measured ~7.2 KiB (tests/unit/test_parse_memo.py checks
# it stays under this), plus the caller's text it holds (its model name and stop sequences), counted apart.
SUMMARY_BYTES = 8 * 1024

CacheKeyId = tuple[str, str, str]  # scope, provider, upstream model


@dataclass(slots=True)
class ParsedBody:
    request: ChatRequest
    cache_keys: dict[CacheKeyId, str] = field(default_factory=dict)
    source: CallerBody | None = None  # the body as it came, for targets that relay it

    def owns(self, req: ChatRequest) -> bool:
        """``req`` was read from this body (its summary or its canonical parse): its keys are this body's."""
        return req is self.request or (self.source is not None and self.source.owns(req))

    def cache_key(self, scope: str, provider: str, model: str, derive: Callable[[], str]) -> str:
        """The cache key for this body's request in ``scope`` for a target, derived once."""
        ident = (scope, provider, model)
        key = self.cache_keys.get(ident)
        if key is None:
            key = derive()
            if len(self.cache_keys) < MAX_KEYS_PER_BODY:
                self.cache_keys[ident] = key
        return key


@dataclass(slots=True)
class Summary:
    """What a cache hit needs of a body too big to keep parsed: the request's summary and the body's cache keys."""

    dialect: str
    request: ChatRequest  # ``relay.summary``: no messages
    cache_keys: dict[CacheKeyId, str]

    @classmethod
    def of(cls, parsed: ParsedBody) -> Summary | None:
        """``parsed`` without its parse; None when its request is the whole parse (nothing small to keep)."""
        source = parsed.source
        if source is None or parsed.request is not source.request or parsed.request.messages:
            return None
        return cls(source.dialect, parsed.request, parsed.cache_keys)

    @property
    def size(self) -> int:
        """Bytes counted for it besides its body's: ``SUMMARY_BYTES`` and the caller's text it holds."""
        return SUMMARY_BYTES + len(self.request.model) + sum(len(s) for s in self.request.stop)

    def body(self, raw: bytes) -> ParsedBody:
        """This request's parsed body: the summary and the shared keys, its bytes read again only if needed."""
        return ParsedBody(self.request, self.cache_keys, RecalledBody(self.dialect, raw, self.request))


class ParseMemo:
    def __init__(self, parse: Callable[[bytes], ChatRequest | ParsedBody], *, max_entries: int = MEMO_ENTRIES,
                 max_bytes: int = MEMO_BYTES) -> None:
        self._parse = parse
        self._memo: L1Cache[ParsedBody | Summary] = L1Cache(max_entries, max_bytes, ttl=float("inf"))
        self._seen = LRU(max(1, 4 * max_entries))  # hashes of bodies seen once

    def parse(self, raw: bytes) -> ParsedBody:
        """The parsed body: remembered, or parsed now (raising the caller's 400 if it is wrong)."""
        kept = self._memo.get(raw)
        if kept is not None:
            return kept.body(raw) if isinstance(kept, Summary) else kept
        result = self._parse(raw)
        parsed = result if isinstance(result, ParsedBody) else ParsedBody(result)
        if self._memo.enabled:
            digest = hash(raw)
            if digest in self._seen:
                self._keep(raw, parsed)
            else:
                self._seen[digest] = None
        return parsed

    def _keep(self, raw: bytes, parsed: ParsedBody) -> None:
        """Parsed if that fits, else its ``Summary`` (the module docstring)."""
        size = len(raw) * _PARSED_SIZE_FACTOR
        if size <= self._memo.max_entry_bytes:
            self._memo.put(raw, parsed, size)
            return
        summary = Summary.of(parsed)
        if summary is not None:
            self._memo.put(raw, summary, len(raw) + summary.size)

    @property
    def bytes_used(self) -> int:
        return self._memo.bytes_used

    def __len__(self) -> int:
        return len(self._memo)


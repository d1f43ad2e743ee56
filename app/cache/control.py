"""What a caller asked of the cache, from its request headers.

``Cache-Control: no-cache`` skips the lookup but stores the fresh answer;
``no-store`` neither looks up nor stores; ``x-llm-edge-cache-ttl: N`` stores
this answer for N seconds (0 means do not store; at most 30 days). Other
Cache-Control directives are ignored, as HTTP caches do with unknown ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import InvalidRequest

TTL_HEADER = "x-llm-edge-cache-ttl"
TTL_ENVIRON = "HTTP_X_LLM_EDGE_CACHE_TTL"  # the same header, as the WSGI environ names it
MAX_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CacheControl:
    lookup: bool = True
    store: bool = True
    ttl: int | None = None  # None: the configured L1/L2 lifetimes

    @classmethod
    def from_headers(cls, cache_control: str | None, ttl: str | None) -> CacheControl:
        if not cache_control and ttl is None:
            return DEFAULT
        directives = {d.split("=", 1)[0].strip().lower() for d in (cache_control or "").split(",")}
        store = "no-store" not in directives
        lookup = store and "no-cache" not in directives
        seconds = None
        if ttl is not None:
            try:
                seconds = int(ttl.strip())
            except ValueError:
                seconds = -1
            if not 0 <= seconds <= MAX_TTL_SECONDS:
                raise InvalidRequest(f"Header '{TTL_HEADER}' must be a whole number of seconds from 0 to "
                                     f"{MAX_TTL_SECONDS}, got '{ttl[:40]}'", param=TTL_HEADER)
            if seconds == 0:
                store = False
        return cls(lookup=lookup, store=store, ttl=seconds)


DEFAULT = CacheControl()

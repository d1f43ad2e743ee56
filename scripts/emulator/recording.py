"""What the emulator saw: each request as recorded, and per-path counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RecordedRequest:
    """A request as the emulator saw it; also readable as a dict (``rec["body"]``) for convenience."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""
    received_at: float = 0.0
    status: int | None = None
    fault: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "received_at": self.received_at,
            "status": self.status,
            "fault": self.fault,
        }


class Recordings:
    """Recorded requests (oldest first) and how many requests each path got. Not locked: see FaultBook."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.counts: dict[str, int] = {}

    def last(self, path: str | None) -> RecordedRequest | None:
        return next((r for r in reversed(self.requests) if path is None or r.path.startswith(path)), None)

    def count(self, path: str | None) -> int:
        if path is None:
            return sum(self.counts.values())
        return sum(n for p, n in self.counts.items() if p.startswith(path))

    def clear(self) -> None:
        self.requests.clear()
        self.counts.clear()

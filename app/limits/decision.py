"""What a limit check answers, and how it is told to the caller in headers."""

from __future__ import annotations

from dataclasses import dataclass

# Which limit refused a request; also the ``limit`` label of llm_edge_rate_limited_total.
REQUESTS, GLOBAL, TOKENS, BUDGET = "requests", "global", "tokens", "budget"


def duration(seconds: float) -> str:
    """OpenAI's reset header style (Go durations): ``0s``, ``120ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m" + f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes}m{int(rest)}s"


@dataclass(slots=True)
class Decision:
    """One request's verdict and the caller's limit state after it (all times in seconds).

    Never changed once made (``dataclasses.replace`` makes another), but not ``frozen``: a leased
    admission makes one per request, and a frozen dataclass's ``__init__`` sets every field through
    ``object.__setattr__`` (four times the cost of this one's).
    """

    allowed: bool
    refused_by: str | None  # REQUESTS, GLOBAL or TOKENS when refused
    limit: int  # requests the client may send at once (its tier's burst)
    remaining: int
    reset: float  # until the client's request allowance is full again
    retry_after: float  # when refused: until a retry can succeed
    token_limit: int | None = None
    token_remaining: int | None = None
    token_reset: float | None = None
    shared: bool = True  # counted in Redis; False while limiting locally in this worker

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("x-ratelimit-limit-requests", str(self.limit)),
            ("x-ratelimit-remaining-requests", str(self.remaining)),
            ("x-ratelimit-reset-requests", duration(self.reset)),
        ]
        if self.token_limit is not None:
            out += [
                ("x-ratelimit-limit-tokens", str(self.token_limit)),
                ("x-ratelimit-remaining-tokens", str(self.token_remaining)),
                ("x-ratelimit-reset-tokens", duration(self.token_reset or 0.0)),
            ]
        return out

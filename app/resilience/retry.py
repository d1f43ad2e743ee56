"""Which failed upstream attempts are tried again, and how long to wait first.

``RetryPolicy`` is a frozen value object in the spirit of urllib3's ``Retry``,
but built for this gateway: it retries POST on purpose (a chat completion has
no side effect worth protecting, and urllib3 skips POST), it counts whole
attempts rather than socket operations, it never waits past the request's
deadline, and a ``retry-after`` over its cap ends the retries so the caller
can fall back at once instead of sleeping. The attempt loop lives in the
pipeline; the policy only answers "wait this long, or stop".

Failures are named like Envoy's ``retry_on``: a provider HTTP status, or one
of the ``FailureKind`` words of ``app.errors`` when no status came back
(``classify(err).retry_on``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config.settings import DEFAULT_RETRY_ON
from app.errors import GatewayError, classify

if TYPE_CHECKING:
    from app.config.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per target, what is retried, and the full-jitter exponential backoff between attempts."""

    attempts: int = 3  # per target, the first one included; 1 turns retries off
    retry_on: frozenset[str | int] = DEFAULT_RETRY_ON
    backoff_base: float = 0.2  # seconds; the n-th retry waits uniform(0, min(max, base * 2**(n-1)))
    backoff_max: float = 2.0
    retry_after_max: float = 5.0  # a provider's retry-after up to this is waited out; above it we stop

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
        return cls(attempts=s.retry_attempts, retry_on=s.retry_on, backoff_base=s.retry_backoff_base,
                   backoff_max=s.retry_backoff_max, retry_after_max=s.retry_after_max)

    def pause(self, attempt: int, err: GatewayError, time_left: float,
              rng: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before trying the same target again after failed ``attempt`` (1-based), or None.

        None means: do not retry here (out of attempts, not retryable, the
        provider asked for a longer wait than we accept, or the wait would
        not leave time for another attempt); the caller falls back.
        """
        if attempt >= self.attempts or classify(err).retry_on not in self.retry_on:
            return None
        hinted = err.retry_after
        if hinted is not None:
            if hinted > self.retry_after_max:
                return None
            wait = float(hinted)
        else:  # full jitter (AWS architecture blog): spreads retries of many clients evenly
            wait = rng() * min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return wait if wait < time_left else None

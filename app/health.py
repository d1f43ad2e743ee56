"""The result of one health check: a neutral type that any component may return.

Infrastructure (breakers, the Redis guard, the rate limiter) reports its state
with it; the HTTP layer's ``/health`` resource only collects and renders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    detail: Any = None


HealthCheck = Callable[[], Check]

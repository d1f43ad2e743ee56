"""Spend budgets per client: cents per UTC day and/or month, checked before a request runs.

Enforcement needs only how much a client has spent, through one small
interface, ``spent_cents(client_id, period) -> float`` (period ``"day"`` or
``"month"``). The gateway wires it to the observability spend ledger, which
keeps the total across workers and replicas; tests pass a plain function.
Spend is known only after an answer, so a request that starts under budget
runs to its end: a budget can be overrun by the requests in flight when it
ran out, and by those other workers start before the ledger's total (about a
second behind) reaches them; never by a request started after that.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable

from app.errors import RateLimited
from app.limits.clients import Client

SpentCents = Callable[[str, str], float]
_PERIOD_WORDS = {"day": "UTC day", "month": "UTC month"}


def seconds_until_period_end(period: str, now: float) -> float:
    """Seconds from ``now`` (epoch) to the next UTC midnight, or to the first of the next month."""
    t = time.gmtime(now)
    if period == "day":
        end = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400
    else:
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        end = calendar.timegm((year, month, 1, 0, 0, 0))
    return end - now


class Budgets:
    def __init__(self, spent_cents: SpentCents | None, clock: Callable[[], float] = time.time) -> None:
        self.spent_cents = spent_cents
        self._clock = clock

    @property
    def enforced(self) -> bool:
        return self.spent_cents is not None

    def check(self, client: Client) -> None:
        """Raise 429 (``insufficient_quota``) when a budget of ``client`` is used up."""
        if not client.budgets or self.spent_cents is None:
            return
        for period, budget in client.budgets.items():
            spent = self.spent_cents(client.id, period)
            if spent >= budget:
                wait = seconds_until_period_end(period, self._clock())
                raise RateLimited(
                    f"Spend budget exhausted: client '{client.id}' has spent {spent:.2f} of its "
                    f"{budget:g} cents for this {_PERIOD_WORDS[period]}; it renews in {wait / 3600:.1f} h",
                    code="insufficient_quota", retry_after=wait)

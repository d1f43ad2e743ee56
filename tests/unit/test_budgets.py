"""Spend budgets: enforced through ``spent_cents(client_id, period)``, answered with 429 and when they renew."""

from __future__ import annotations

import calendar

import pytest

from app.errors import RateLimited
from app.limits.budgets import Budgets, seconds_until_period_end
from app.limits.clients import Client

NOV_26_1030 = calendar.timegm((2026, 11, 26, 10, 30, 0))
DEC_31_2300 = calendar.timegm((2026, 12, 31, 23, 0, 0))


def test_period_ends_are_utc_midnight_and_the_first_of_next_month():
    assert seconds_until_period_end("day", NOV_26_1030) == 13.5 * 3600
    assert seconds_until_period_end("month", NOV_26_1030) == (4 * 24 + 13.5) * 3600
    assert seconds_until_period_end("month", DEC_31_2300) == 3600, "December rolls into January"


def test_under_budget_passes_and_asks_only_for_the_periods_configured():
    asked = []

    def spent(client_id: str, period: str) -> float:
        asked.append((client_id, period))
        return 49.99

    Budgets(spent, clock=lambda: NOV_26_1030).check(Client("acme", "pro", {"day": 50.0}))
    assert asked == [("acme", "day")]


def test_a_used_up_budget_is_a_429_that_says_which_and_when():
    budgets = Budgets(lambda cid, period: {"day": 10.0, "month": 1234.5}[period], clock=lambda: NOV_26_1030)
    with pytest.raises(RateLimited) as info:
        budgets.check(Client("acme", "pro", {"day": 500.0, "month": 1000.0}))
    err = info.value
    assert err.status == 429 and err.code == "insufficient_quota"
    assert "Spend budget exhausted" in err.message and "1234.50 of its 1000 cents" in err.message
    assert "UTC month" in err.message and err.retry_after == (4 * 24 + 13.5) * 3600
    assert err.anthropic_body()["error"]["type"] == "rate_limit_error"


def test_clients_without_budgets_never_ask():
    def spent(client_id: str, period: str) -> float:
        raise AssertionError("not asked")

    Budgets(spent).check(Client("acme", "pro", {}))
    assert not Budgets(None).enforced
    Budgets(None).check(Client("acme", "pro", {"day": 1.0}))

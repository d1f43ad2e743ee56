"""Spend budgets per client: cents per UTC day and/or month, checked before a request runs.

Enforcement needs only how much a client has spent, through one small
interface, ``spent_cents(client_id, period) -> float`` (period ``"day"`` or
``"month"``). The gateway wires it to the observability spend ledger, which
keeps the total across workers and replicas; tests pass a plain function.
``check`` is the cheap early refusal (before the body is read). The limit
that holds under concurrency is ``BudgetReservations``: a request going
upstream first holds its worst-case cost (``reserve``), atomically in Redis
across workers and replicas (``lua/reserve.lua``), and is admitted only while
spent + held is under the budget; the answer's end turns the hold into the
real cost (``Reservation.settle``), a failure drops it (``release``).
docs/access.md (budgets) says what overshoot is left.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from app.errors import RateLimited
from app.limits.clients import Client
from app.resilience.redis_guard import RedisGuard

log = logging.getLogger("llm_edge.budgets")

SpentCents = Callable[[str, str], float]
AddSpend = Callable[[str, float], None]  # client id, cents: the spend ledger's tally (reaches Redis later)
SpendKey = Callable[[str, str], str]  # client id, period -> the spend ledger's Redis key
_LUA = Path(__file__).with_name("lua")
RESERVE_SCRIPT = (_LUA / "reserve.lua").read_text(encoding="utf-8")
SETTLE_SCRIPT = (_LUA / "settle.lua").read_text(encoding="utf-8")
_PERIODS = ("day", "month")
_KEY_TTL = {"day": 3 * 86400, "month": 40 * 86400}  # as the spend ledger's keys
_UNSET = object()
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
                raise exhausted(client.id, period, spent, budget, 0.0, self._clock())


def exhausted(client_id: str, period: str, spent: float, budget: float, held: float, now: float) -> RateLimited:
    """The 429 ``insufficient_quota`` for a used-up budget (``held``: cents reserved by requests in flight)."""
    wait = seconds_until_period_end(period, now)
    running = f" and {held:.2f} is held by requests in flight" if held > 0 else ""
    return RateLimited(
        f"Spend budget exhausted: client '{client_id}' has spent {spent:.2f} of its {budget:g} cents for this "
        f"{_PERIOD_WORDS[period]}{running}; it renews in {wait / 3600:.1f} h",
        code="insufficient_quota", retry_after=wait)


class Reservation:
    """Cents held against one client's budgets while one request runs; ended exactly once.

    ``settle(actual_cents)`` when the answer is complete (the real cost is counted as spend),
    ``release()`` when it failed or the client left before it was (nothing is counted).
    A client without budgets gets one too: its ``settle`` only adds the spend.
    """

    __slots__ = ("_lock", "_owner", "cents", "client_id", "ended", "id", "shared")

    def __init__(self, owner: BudgetReservations, client_id: str, cents: float, hold_id: str | None,
                 shared: bool) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self.client_id = client_id
        self.cents = cents
        self.id = hold_id  # None: nothing held (no budgets)
        self.shared = shared  # held in Redis (else in this process)
        self.ended = False

    def _end(self) -> bool:
        with self._lock:
            if self.ended:
                return False
            self.ended = True
            return True

    def settle(self, actual_cents: float) -> None:
        if self._end():
            self._owner._finish(self, max(0.0, actual_cents))

    def release(self) -> None:
        if self._end():
            self._owner._finish(self, 0.0)


class BudgetReservations:
    """Holds worst-case costs against budgets: in Redis (one script per reserve and per settle), else locally.

    While Redis is unreachable each process holds its own requests against the spend it knows
    (``spent_cents``: the last total read plus its unsent tally), as the rate limiter does.
    A hold whose process died is dropped by Redis when ``hold_seconds`` have passed.
    """

    def __init__(self, guard: RedisGuard, spend_key: SpendKey, add_spend: AddSpend, spent_cents: SpentCents,
                 *, hold_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.guard = guard
        self.spend_key = spend_key
        self.add_spend = add_spend
        self.spent_cents = spent_cents
        self.hold_ms = max(1000, int(hold_seconds * 1000))
        self._clock = clock
        client = guard.client
        self._reserve = client.register_script(RESERVE_SCRIPT) if client is not None else None
        self._settle = client.register_script(SETTLE_SCRIPT) if client is not None else None
        self._lock = threading.Lock()
        self._held: dict[str, float] = {}  # client id -> cents held in this process (Redis unreachable)

    def _keys(self, client_id: str) -> list[str]:
        day, month = (self.spend_key(client_id, p) for p in _PERIODS)
        return [day, month, day.rsplit(":", 2)[0] + ":holds"]

    def reserve(self, client_id: str, budgets: Mapping[str, float], cents: float) -> Reservation:
        """Hold ``cents`` (the request's worst case); 429 ``insufficient_quota`` when a budget is used up."""
        if not budgets:
            return Reservation(self, client_id, 0.0, None, False)
        hold_id = uuid.uuid4().hex
        result = _UNSET
        if self._reserve is not None:
            args = [hold_id, repr(cents), self.hold_ms, *(budgets.get(p, -1) for p in _PERIODS)]
            result = self.guard.script("budget_reserve", _UNSET, self._reserve, self._keys(client_id), args)
        if result is _UNSET:
            return self._reserve_locally(client_id, budgets, cents, hold_id)
        if int(result[0]) == 0:
            period = _PERIODS[int(result[1]) - 1]
            raise exhausted(client_id, period, float(result[2]), budgets[period], float(result[3]), self._clock())
        return Reservation(self, client_id, cents, hold_id, True)

    def _reserve_locally(self, client_id: str, budgets: Mapping[str, float], cents: float,
                         hold_id: str) -> Reservation:
        spent = {p: self.spent_cents(client_id, p) for p in budgets}  # I/O outside the lock
        with self._lock:
            held = self._held.get(client_id, 0.0)
            for period, budget in budgets.items():
                if spent[period] + held >= budget:
                    raise exhausted(client_id, period, spent[period], budget, held, self._clock())
            self._held[client_id] = held + cents
        return Reservation(self, client_id, cents, hold_id, False)

    def _finish(self, res: Reservation, actual: float) -> None:
        if res.id is not None and not res.shared:
            with self._lock:
                left = self._held.get(res.client_id, 0.0) - res.cents
                if left > 1e-9:
                    self._held[res.client_id] = left
                else:
                    self._held.pop(res.client_id, None)
        if res.shared:
            assert self._settle is not None
            args = [res.id, repr(actual), _KEY_TTL["day"], _KEY_TTL["month"]]
            if self.guard.script("budget_settle", None, self._settle, self._keys(res.client_id), args) is not None:
                return
            # Redis went away meanwhile: the hold expires there; the cost waits in the ledger's tally.
        if actual > 0:
            self.add_spend(res.client_id, actual)

"""Usage accounting: tokens, cost and per-client spend for every answer, upstream or cached.

One object per worker, shared by all threads. The pipeline calls ``upstream``
once per answered request (streams included, when their final usage is in,
before their last event goes out); the cache calls ``cache_hit`` when it
answers instead of a provider, to count what the hit saved. Both run before
the answer is out, because the client's next request must see its spend and
tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from app.accounting.cost import PriceTable
from app.accounting.spend import SpendLedger
from app.context import RequestContext
from app.formats.canonical import Usage
from app.observability import metrics

_SAVED_LIMIT = 4096  # cached answers whose savings are remembered; past it the memo starts again

# Counts a provider's tokens against the client's token rate limit: ``AccessMiddleware.count_tokens``.
TokenCounter = Callable[[RequestContext, Usage], None]


class Settles(Protocol):
    """A budget reservation (app/limits/budgets.py): the answer's real cost ends it."""

    def settle(self, actual_cents: float) -> None: ...


class Accounting:
    def __init__(self, prices: PriceTable, spend: SpendLedger | None = None,
                 tokens: TokenCounter | None = None) -> None:
        self.prices = prices
        self.spend = spend
        self.tokens = tokens
        # id(usage) -> (usage, provider, model, cents saved, the savings series' adder): cache_hit's memo
        self._saved: dict[int, tuple[Usage, str, str, float, Callable[[float], None]]] = {}

    def upstream(self, ctx: RequestContext, provider: str, model: str, usage: Usage,
                 reservation: Settles | None = None) -> float:
        """Count a provider's answer: tokens, cost (metric, ``ctx.cost_cents``), the client's spend (through
        ``reservation`` when the request holds one: it settles to this cost) and its token rate limit."""
        ctx.usage = usage
        cents = self.prices.cost_cents(provider, model, usage)
        ctx.cost_cents = cents
        label = metrics.MODEL_LABELS.admit(model)
        metrics.adder(metrics.TOKENS, provider, label, "prompt")(usage.input_tokens)
        metrics.adder(metrics.TOKENS, provider, label, "completion")(usage.output_tokens)
        metrics.adder(metrics.COST_CENTS, provider, label)(cents)
        if usage.cache_read_tokens:
            saved = self.prices.prompt_cache_savings_cents(provider, model, usage)
            metrics.adder(metrics.PROMPT_CACHE_SAVINGS_CENTS, provider, label)(saved)
        if reservation is not None:
            reservation.settle(cents)
        elif self.spend is not None and cents > 0:
            self.spend.add(ctx.client_id, cents)
        if self.tokens is not None:
            self.tokens(ctx, usage)
        return cents

    def cache_hit(self, ctx: RequestContext, provider: str, model: str, usage: Usage) -> float:
        """Count a cache hit: what the same answer cost upstream is saved (cents, also returned).

        A cached answer is served many times with the same usage object: its price and its savings
        series are worked out once per (usage, provider, model) and remembered (the prices never change
        in a process).
        """
        ctx.usage = usage
        known = self._saved.get(id(usage))
        if known is None or known[0] is not usage or known[1] != provider or known[2] != model:
            saved = self.prices.cost_cents(provider, model, usage)
            add = metrics.adder(metrics.CACHE_SAVINGS_CENTS, provider, metrics.MODEL_LABELS.admit(model))
            if len(self._saved) >= _SAVED_LIMIT:
                self._saved.clear()
            known = self._saved[id(usage)] = (usage, provider, model, saved, add)  # usage kept: its id stays its
        known[4](known[3])
        return known[3]

"""Who is calling and may they: client key, request/token limits and spend budget, per request.

Runs right after ``RequestContextMiddleware`` (so refusals carry a request id
and an access log line). Health endpoints need no key and are never limited
(the metrics port is a separate server in the master and never sees this).
Refusals are raised as ``Unauthorized`` / ``RateLimited`` and rendered in the
caller's dialect by ``app/http/error_handlers.py``; this middleware only adds the
``x-ratelimit-*`` headers. An answer's tokens are counted by ``count_tokens``,
which usage accounting calls as soon as a provider's usage is known (before
the answer, or before a stream's last event, goes out).
"""

from __future__ import annotations

import math

import falcon

from app.context import RequestContext
from app.errors import RateLimited, Unauthorized
from app.formats.canonical import Usage
from app.limits.budgets import Budgets
from app.limits.clients import Client, ClientRegistry, presented_key
from app.limits.decision import BUDGET, GLOBAL, TOKENS, Decision
from app.limits.policy import LimitPolicy, Tier
from app.limits.ratelimit import RateLimiter
from app.observability import metrics


def _per(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}" + ("" if amount == 1 else "s")


PUBLIC_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


class AccessMiddleware:
    def __init__(self, clients: ClientRegistry, policy: LimitPolicy, limiter: RateLimiter,
                 budgets: Budgets) -> None:
        self.clients = clients
        self.policy = policy
        self.limiter = limiter
        self.budgets = budgets

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in PUBLIC_PATHS:
            return
        client = self._identify(req)
        ctx: RequestContext = req.context.gw
        ctx.client_id, ctx.tier = client.id, client.tier
        tier = self.policy.tiers[client.tier]
        decision = self.limiter.check(client.id, tier)
        req.context.limit = decision
        if not decision.allowed:
            metrics.RATE_LIMITED.labels(client.tier, decision.refused_by).inc()
            raise RateLimited(self._refusal(client, tier, decision), retry_after=decision.retry_after)
        try:
            self.budgets.check(client)
        except RateLimited:
            metrics.RATE_LIMITED.labels(client.tier, BUDGET).inc()
            raise

    def _identify(self, req: falcon.Request) -> Client:
        if self.clients.open:
            return self.clients.anonymous
        key = presented_key(req.env.get("HTTP_AUTHORIZATION"), req.env.get("HTTP_X_API_KEY"))
        if key is None:
            raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
        client = self.clients.find(key)
        if client is None:
            raise Unauthorized("Invalid API key: no client of this gateway has this key")
        return client

    def _refusal(self, client: Client, tier: Tier, d: Decision) -> str:
        wait = f"Retry after {d.retry_after:.2f} s."
        if d.refused_by == GLOBAL:
            g = self.policy.global_requests
            rate = g.per_second if g else 0
            return f"Rate limit reached: the gateway's global limit of {_per(rate, 'request')} per second. {wait}"
        where = f"for client '{client.id}' (tier {tier.name})"
        if not d.shared:
            where += ", counted per worker while Redis is unreachable"
        if d.refused_by == TOKENS and tier.tokens:
            return f"Rate limit reached {where}: {_per(tier.tokens.per_minute, 'token')} per minute. {wait}"
        return f"Rate limit reached {where}: {_per(tier.requests.per_second, 'request')} per second. {wait}"

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        decision: Decision | None = getattr(req.context, "limit", None)
        if decision is None:
            if resp.status_code == 401:
                resp.set_header("www-authenticate", 'Bearer realm="llm-edge-agent"')
            return
        resp.set_headers(decision.headers())  # one call: Falcon's set_header for each, in order
        if not decision.allowed:
            resp.set_header("retry-after-ms", str(math.ceil(decision.retry_after * 1000)))

    def count_tokens(self, ctx: RequestContext, usage: Usage) -> None:
        """A provider's answer's tokens against the client's token limit (a cache hit costs nothing: not called)."""
        tier = self.policy.tiers[ctx.tier]
        if tier.tokens is not None:
            self.limiter.debit_tokens(ctx.client_id, tier, usage.input_tokens + usage.output_tokens)

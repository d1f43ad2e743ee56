"""POST /v1/messages/count_tokens: Anthropic's token count, relayed or honestly estimated.

The model is routed like chat (aliases, ``provider/model``, prefixes, fallbacks).
Each target in turn:

* an Anthropic-format target gets the caller's body as it came (only
  ``model`` rewritten when an alias maps it), with the caller's
  ``anthropic-version`` and ``anthropic-beta``, under the provider's circuit
  breaker, retried and fallen back from as chat is (counting has no side
  effect). Its ``{"input_tokens": N}`` is answered as the provider sent it,
  with ``x-llm-edge-token-count: exact``;
* an OpenAI-format target, or an Anthropic-format one on a cloud (Bedrock,
  Vertex AI: their count endpoints are not relayed), has no count endpoint here: the gateway estimates
  (``app/formats/token_estimate.py``) and says so with
  ``x-llm-edge-token-count: estimate``; ``x-llm-edge-provider`` is then
  ``gateway``, as no provider answered.

The gateway itself checks only what it needs to route a relay (a JSON object,
``model``, a non-empty ``messages`` array): the provider validates the rest
and its 400 comes back with its message, so a field or block type the
gateway's codec does not know still reaches it. An estimate reads the
content, so the body must pass the same codec rules as ``POST /v1/messages``
(``max_tokens`` aside, which count_tokens does not take).

Nothing is cached: each call of an agent carries a longer conversation than
the last, so repeats are rare, and the provider's count is free and fast; an
estimate takes microseconds. Nothing is charged either: no budget hold and no
token debit (the count costs the provider nothing). Client keys and request
rate limits apply as on every path (``AccessMiddleware``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import orjson

from app.context import RequestContext
from app.errors import GatewayError, InvalidRequest
from app.formats import anthropic as anthropic_codec
from app.formats.canonical import ChatRequest
from app.formats.common import as_list, as_model, json_object, required
from app.formats.token_estimate import estimate_input_tokens
from app.http.caller_headers import anthropic_headers
from app.http.resources.chat import read_body
from app.observability import metrics
from app.observability.tracing import Tracing
from app.pipeline import attempt_target, observe_attempt, unanswered
from app.providers.count_tokens import TokenCountRelay
from app.providers.routing import Router, Target
from app.providers.upstream import deadline_from
from app.resilience.breaker import Breakers, Permit
from app.resilience.retry import RetryPolicy

COUNT_HEADER = "x-llm-edge-token-count"
EXACT, ESTIMATE = "exact", "estimate"
ESTIMATED_BY = "gateway"  # x-llm-edge-provider (and the metrics' provider label) of an estimate

_BETA_QUERY = re.compile(r"(?:^|&)beta=true(?:&|$)")  # the SDKs' beta calls add ?beta=true


@dataclass(frozen=True, slots=True)
class CountTokensResource:
    router: Router
    relay: TokenCountRelay
    breakers: Breakers
    retry: RetryPolicy
    tracing: Tracing
    request_timeout: float
    max_request_bytes: int
    sleep: Callable[[float], None] = time.sleep

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx: RequestContext = req.context.gw
        raw = read_body(req, self.max_request_bytes)
        body = json_object(raw)
        model = as_model(body.get("model"))
        as_list(required(body, "messages", "messages"), "messages", nonempty=True)
        ctx.requested_model = model
        headers = anthropic_headers(req.env)
        query = "?beta=true" if _BETA_QUERY.search(req.env.get("QUERY_STRING", "")) else ""
        answer, how = self._count(ctx, self.router.resolve(model), raw, body, headers, query)
        resp.content_type = "application/json"
        resp.data = answer
        resp.set_header(COUNT_HEADER, how)

    def _count(self, ctx: RequestContext, targets: tuple[Target, ...], raw: bytes, body: dict[str, Any],
               headers: dict[str, str], query: str) -> tuple[bytes, str]:
        """The answer and how it was made, from the first target that gives one."""
        deadline = deadline_from(self.request_timeout)
        failure: GatewayError | None = None
        for target in targets:
            if target.provider.type != "anthropic" or target.provider.platform != "direct":  # clouds: no relay yet
                try:
                    tokens = estimate_input_tokens(_parsed(body))
                except InvalidRequest as err:
                    if target is targets[0]:
                        raise
                    failure = failure or err  # a fallback that cannot read the body is skipped, as in chat
                    continue
                ctx.provider, ctx.model = ESTIMATED_BY, target.model
                return orjson.dumps({"input_tokens": tokens}), ESTIMATE
            sent = raw if target.model == body["model"] else orjson.dumps({**body, "model": target.model})
            answer, err = self._relay(ctx, target, sent, headers, query, deadline)
            failure = err or failure
            if answer is None:
                continue  # provider trouble, or its breaker is open: on to the next target
            if target is not targets[0]:
                metrics.FALLBACKS.labels(targets[0].provider.name, target.provider.name).inc()
            ctx.provider, ctx.model, ctx.deployment = target.provider.name, target.model, target.deployment
            return answer, EXACT
        raise unanswered(failure, deadline, f"No provider counted tokens for model '{ctx.requested_model}' within "
                         "REQUEST_TIMEOUT", (self.breakers[t.breaker_name].retry_after() for t in targets),
                         f"Every provider for model '{ctx.requested_model}' is paused by its circuit breaker")

    def _relay(self, ctx: RequestContext, target: Target, body: bytes, forwarded: dict[str, str], query: str,
               deadline: float) -> tuple[bytes | None, GatewayError | None]:
        """One target's answer, from attempts as chat's; else its last failure (None if its breaker let none
        through). A failure that is the caller's to fix is raised: no other target would answer otherwise."""

        def call(headers: dict[str, str], span: Any, permit: Permit) -> bytes:
            return self.relay.count(target, body, headers, deadline, query)

        answered, failure = attempt_target(ctx, target, self.breakers[target.breaker_name], deadline, self.retry,
                                           self.sleep, self.tracing, ChatRequest(model=target.model, messages=()),
                                           {**forwarded, "x-request-id": ctx.request_id}, call)
        if answered is None:
            return None, failure
        observe_attempt(target, answered.started)
        Tracing.end_attempt(answered.span, target)
        return answered.result, None


def _parsed(body: dict[str, Any]) -> ChatRequest:
    """The body read by the Messages codec, ``max_tokens`` (which count_tokens does not take) aside."""
    return anthropic_codec.parse_request(body if "max_tokens" in body else {**body, "max_tokens": 1})

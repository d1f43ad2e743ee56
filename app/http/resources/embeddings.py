"""POST /v1/embeddings: relayed to OpenAI-format providers, cached, counted.

The model is routed like chat (aliases, ``provider/model``, prefixes, fallbacks, breakers,
retries: ``attempt_target``), to its OpenAI-format targets only: Anthropic's API has no
embeddings, so a model served only by Anthropic-format providers is a 400 naming it, and an
Anthropic-format fallback is skipped. A fallback should name the same embedding model on
another provider: vectors of different models do not compare.

The body goes upstream as it came (``model`` rewritten only where an alias maps it) and the
provider's answer comes back as its bytes, so ``encoding_format`` ``float`` or ``base64`` is
answered exactly as asked; ``app/formats/embeddings.py`` says what the gateway checks.

Cached in L1 and L2 through the chat cache (``CacheStage``: the same Cache-Control rules,
tenant scope and coalescing of identical requests in flight). The key is the body's
(``relay_key`` under the ``embeddings`` name, so no chat body can share it): input, target,
``dimensions``, ``encoding_format`` (absent counts as ``float``) and any other field; not
``user``. An entry is the provider's bytes with its usage, so a hit is byte-identical and
counts its saving. A batch is cached whole: docs/cache.md says why batches that are partly
cached are not split.

Tokens and cost are counted from ``usage.prompt_tokens`` (``PRICING_FILE``), the client's
budget holds and token rate limit apply as for chat.
"""

from __future__ import annotations

from typing import Any

import falcon

from app.cache.control import TTL_ENVIRON, CacheControl
from app.cache.entry import Relayed
from app.cache.stage import NO_TICKET, Ticket
from app.context import RequestContext
from app.errors import GatewayError, InvalidRequest, NoHealthyProvider
from app.formats.canonical import ChatRequest, ChatResponse
from app.formats.common import json_object, shown_model
from app.formats.embeddings import check_request, input_text, key_fields
from app.formats.relay import CallerBody, upstream_body
from app.http.resources.chat import forwarded_headers, read_body
from app.limits.budgets import Reservation
from app.observability import metrics
from app.observability.access import PROMPT_LOG_LIMIT
from app.observability.logging import redact
from app.observability.tracing import Tracing
from app.pipeline import Pipeline, attempt_target, observe_attempt, unanswered
from app.providers.embeddings import EmbeddingsRelay
from app.providers.http import UpstreamAbort
from app.providers.routing import Target
from app.providers.upstream import deadline_from
from app.resilience.breaker import Permit
from app.resilience.disconnects import CLIENT_GONE, CLIENT_GONE_STATUS, ClientGone

KEY_DIALECT = "embeddings"  # names the cache key's kind: never equal to a chat dialect
ANSWER_DIALECT = "openai"  # a hit is served raw to a caller of this dialect (every /v1/embeddings caller)
OPERATION = "embeddings"  # gen_ai.operation.name of the attempt spans (OpenTelemetry's GenAI conventions)


class EmbeddingsResource:
    def __init__(self, pipeline: Pipeline, relay: EmbeddingsRelay, max_request_bytes: int, *,
                 forward_openai_org: bool = False) -> None:
        self.pipeline = pipeline
        self.relay = relay
        self.max_request_bytes = max_request_bytes
        self.forward_openai_org = forward_openai_org

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx: RequestContext = req.context.gw
        raw = read_body(req, self.max_request_bytes)
        body = json_object(raw)
        model = check_request(body)
        ctx.requested_model = model
        if self.pipeline.log_prompts:
            ctx.prompt = redact(input_text(body["input"])[:PROMPT_LOG_LIMIT])
        ctx.forward = forwarded_headers(req.env, self.forward_openai_org)
        control = CacheControl.from_headers(req.env.get("HTTP_CACHE_CONTROL"), req.env.get(TTL_ENVIRON))
        targets = self.targets(model)
        try:
            answer = self._embed(ctx, model, targets, CallerBody(ANSWER_DIALECT, body, raw), control,
                                 req.env.get("gunicorn.socket"))
        except ClientGone:  # hung up while the provider was awaited: nothing to answer (finish records it)
            resp.status = ctx.status = CLIENT_GONE_STATUS
            ctx.error_type = CLIENT_GONE
            return
        resp.content_type = "application/json"
        resp.data = answer

    def targets(self, model: str) -> tuple[Target, ...]:
        """The OpenAI-format targets of ``model``, in order; 400 naming it when it has none."""
        if "openai" not in self.pipeline.router.wire_formats(model):
            raise InvalidRequest(f"The model '{shown_model(model)}' is served only by Anthropic-format providers, "
                                 "which have no embeddings API; use an OpenAI-format embedding model such as "
                                 "text-embedding-3-small", param="model", code="model_not_supported")
        found = tuple(t for t in self.pipeline.router.resolve(model) if t.provider.type == "openai")
        if not found:  # the OpenAI-format targets have no key
            raise NoHealthyProvider(f"No OpenAI-format provider is configured for model '{shown_model(model)}'; "
                                    "set its API key", retry_after=None)
        return found

    def _embed(self, ctx: RequestContext, model: str, targets: tuple[Target, ...], source: CallerBody,
               control: CacheControl, client: Any) -> bytes:
        """The answer's bytes: from the cache, or from the first target that gives one (then cached)."""
        p = self.pipeline
        deadline = deadline_from(p.request_timeout)
        stand_in = ChatRequest(model=model, messages=())  # what the cache, holds and spans read of a request
        ticket: Ticket = NO_TICKET
        if p.cache is not None:
            keyed = CallerBody(KEY_DIALECT, key_fields(source.body), source.raw)
            with p.tracing.cache_lookup(ctx) as span:
                served, ticket = p.cache.begin(ctx, stand_in, targets[0], control, deadline, keyed)
                if span is not None:
                    span.set_attribute("llm_edge.cache", ctx.cache)
            if served is not None:
                # Always the provider's bytes: every entry under an embeddings key is stored relayed, in the
                # dialect of every /v1/embeddings caller.
                assert served.raw is not None
                return served.raw
        hold: Reservation | None = None
        abort = UpstreamAbort()
        stop_watching = p.watcher.watch(client, abort.abort)
        try:
            try:
                if p.holds is not None:
                    hold = p.holds.reserve(ctx, stand_in, targets, upstream_body(source, targets[0].model))
                return self._call_upstream(ctx, stand_in, targets, source, deadline, ticket, hold, abort)
            finally:
                stop_watching()
                abort.finish()
        except BaseException:
            ticket.abandon()
            if hold is not None:
                hold.release()
            raise

    def _call_upstream(self, ctx: RequestContext, stand_in: ChatRequest, targets: tuple[Target, ...],
                       source: CallerBody, deadline: float, ticket: Ticket, hold: Reservation | None,
                       abort: UpstreamAbort) -> bytes:
        p = self.pipeline
        failure: GatewayError | None = None
        for target in targets:
            body = upstream_body(source, target.model)
            headers = {"x-request-id": ctx.request_id}
            if ctx.forward is not None:
                headers.update(ctx.forward.get("openai", ()))

            def call(sent: dict[str, str], span: Any, permit: Permit, target: Target = target,
                     body: bytes = body) -> tuple[bytes, Any]:
                if span is not None:  # the attempt span is made for chat: say what this operation is
                    span.update_name(f"{OPERATION} {target.model}")
                    span.set_attribute("gen_ai.operation.name", OPERATION)
                return self.relay.create(target, body, sent, deadline, abort, ctx.note_upstream_headers)

            answered, err = attempt_target(ctx, target, p.breakers[target.breaker_name], deadline, p.retry,
                                           p.sleep, p.tracing, stand_in, headers, call, abort)
            failure = err or failure
            if answered is None:
                continue  # provider trouble, or its breaker is open: on to the next target
            raw, usage = answered.result
            observe_attempt(target, answered.started)
            if target is not targets[0]:
                metrics.FALLBACKS.labels(targets[0].provider.name, target.provider.name).inc()
            ctx.provider, ctx.model, ctx.deployment = target.provider.name, target.model, target.deployment
            p.accounting.upstream(ctx, target.provider.name, target.model, usage, hold)
            answer = ChatResponse(id="", model=target.model, content=(), stop_reason=None, usage=usage)
            Tracing.end_attempt(answered.span, target, answer)
            ticket.store(target, answer, Relayed(ANSWER_DIALECT, False, raw))
            return raw
        model = shown_model(stand_in.model)
        raise unanswered(failure, deadline, f"No provider answered embeddings for model '{model}' within "
                         "REQUEST_TIMEOUT", (p.breakers[t.breaker_name].retry_after() for t in targets),
                         f"Every provider for model '{model}' is paused by its circuit breaker")


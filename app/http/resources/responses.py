"""OpenAI's Responses API: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``, ``GET .../input_items``.

``POST`` goes through the same pipeline as chat (routing, cache, limits, budgets, retries, fallbacks,
breakers, accounting), with the body as it came (``CallerBody`` of dialect ``responses``):

* to a provider that serves the Responses API (``responses: true`` in MODELS_FILE; the built-in ``openai``)
  it is relayed, and the answer or its events come back as the provider sent them;
* to any other (Anthropic, vLLM...) it is translated (``app/formats/responses.py``), and the answer is a
  ``response`` object (or its event lifecycle) made here, stored per client (``ResponseStore``) unless
  ``store`` is false, so a later ``previous_response_id`` continues it with any model.

``previous_response_id``: a response stored here is expanded into the request (its conversation before
this request's ``input``), for a translated target as for a relayed one; a response held by a provider
(relayed) goes on as the id, which only that provider's models can continue. Such requests bypass the
response cache: what they mean depends on stored state the cache key does not see.

The other three endpoints answer from the store, or are relayed to the provider that holds the
response; a response another client created is not found (404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import falcon
import orjson

from app.cache.control import TTL_ENVIRON, CacheControl
from app.cache.response_store import UNAVAILABLE, ResponseStore
from app.context import RequestContext
from app.errors import GatewayError, InvalidRequest, NotFound
from app.formats import relay
from app.formats import responses as codec
from app.formats.canonical import ChatRequest, StreamStart
from app.formats.common import json_object, opt_int
from app.formats.relay import CallerBody, RelayedEvent
from app.http.draining import DrainState
from app.http.resources.chat import ChatResource, forwarded_headers, read_body
from app.pipeline import Pipeline
from app.providers.responses_relay import StoredResponseRelay
from app.providers.routing import Router
from app.resilience.disconnects import CLIENT_GONE, CLIENT_GONE_STATUS, ClientGone, DisconnectWatcher

BYPASS = CacheControl(lookup=False, store=False)


def store_unavailable(what: str) -> GatewayError:
    return GatewayError(f"{what}: the gateway's response store (Redis) is unavailable; try again later",
                        status=503, code="response_store_unavailable")


def in_responses_terms(err: InvalidRequest) -> InvalidRequest:
    """A translation's 400 that names Chat Completions' ``reasoning_effort`` (the canonical request carries
    ``reasoning.effort`` under that name), said with the caller's field."""
    if "reasoning_effort" not in err.message and err.param != "reasoning_effort":
        return err
    param = "reasoning.effort" if err.param == "reasoning_effort" else err.param
    return InvalidRequest(err.message.replace("reasoning_effort", "reasoning.effort"), param=param, code=err.code)


def _with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as ``input_items`` lists them: each with an id."""
    prefixes = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
    out = []
    for item in items:
        if "id" not in item:
            kind = item.get("type", "message")
            item = {"id": codec._item_id(prefixes.get(kind, "item")), **item}
            if kind == "message" and "type" not in item:
                item["type"] = "message"
        out.append(item)
    return out


def _for_relay(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items as input for a provider with the Responses API: without the ids it never issued, and
    without Claude's reasoning items, which only Claude can read."""
    out = []
    for item in history:
        if item.get("type") == "reasoning":
            continue
        out.append({k: v for k, v in item.items() if k not in ("id", "status")})
    return out


class ResponsesResource(ChatResource):
    def __init__(self, pipeline: Pipeline, store: ResponseStore, max_request_bytes: int,
                 watcher: DisconnectWatcher | None = None, draining: DrainState | None = None, *,
                 forward_openai_org: bool = False) -> None:
        super().__init__(codec, pipeline, max_request_bytes, watcher, draining,
                         forward_openai_org=forward_openai_org)
        self.store = store

    def _resolve(self, ctx: RequestContext, body: dict[str, Any]) -> tuple[
            list[dict[str, Any]] | None, dict[str, Any], InvalidRequest | None]:
        """``previous_response_id``: the stored conversation, the body to relay, and the 400 a translated
        target gets when the conversation is not here to translate."""
        prev = body.get("previous_response_id")
        if prev is None:
            return None, body, None
        record = self.store.load(ctx.client_id, prev)
        if record is UNAVAILABLE:
            return None, body, InvalidRequest(
                "'previous_response_id' cannot be continued by a model served by a provider without the "
                "Responses API: the gateway's response store (Redis) is unavailable", param="previous_response_id")
        if record is None:
            raise InvalidRequest(f"Previous response with id '{prev}' not found.", param="previous_response_id",
                                 code="previous_response_not_found")
        if record.get("kind") == "relayed":
            return None, body, InvalidRequest(
                f"'previous_response_id' refers to a response held by provider {record.get('provider')}; only "
                "models served by a provider with the Responses API can continue it", param="previous_response_id")
        history = record.get("history") or []
        relayed = {k: v for k, v in body.items() if k != "previous_response_id"}
        relayed["input"] = _for_relay(history) + codec.input_items(body)
        return history, relayed, None

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx: RequestContext = req.context.gw
        raw = read_body(req, self.max_request_bytes)
        body = json_object(raw)
        relay.check_body(body, codec.FORMAT)  # what any target needs; the rest is the provider's or the translation's
        history, relay_body, untranslatable = self._resolve(ctx, body)
        try:
            creq = codec.parse_request(body, history)
        except InvalidRequest as err:
            untranslatable = untranslatable or err
            creq = ChatRequest(model=body["model"], messages=(), stream=body.get("stream") is True,
                               max_tokens=opt_int(body, "max_output_tokens", "max_output_tokens"),
                               include_usage=True)
        source = CallerBody(codec.FORMAT, relay_body, raw if relay_body is body else orjson.dumps(relay_body),
                            untranslatable or creq, request=creq)
        ctx.stream = creq.stream
        ctx.forward = forwarded_headers(req.env, self.forward_openai_org)
        control = CacheControl.from_headers(req.env.get("HTTP_CACHE_CONTROL"), req.env.get(TTL_ENVIRON))
        if body.get("previous_response_id") is not None or body.get("background") is True:
            control = BYPASS
        try:
            outcome = self.pipeline.run(ctx, creq, control, req.env.get("gunicorn.socket"), source)
        except InvalidRequest as err:
            raise in_responses_terms(err) from None
        except ClientGone:
            resp.status = ctx.status = CLIENT_GONE_STATUS
            ctx.error_type = CLIENT_GONE
            return
        inputs = codec.input_items(body)
        echoed = codec.echo(body)
        keep = body.get("store", True) is not False
        if outcome.response is not None:
            resp.content_type = "application/json"
            if outcome.raw is not None:  # relayed: the provider's bytes; remember who holds it
                self._own(ctx, outcome.response.id, keep)
                resp.data = outcome.raw
                return
            obj = codec.render_response(outcome.response, codec.new_response_id(), body["model"], echoed)
            if keep:
                self._keep(ctx, obj, inputs, history)
            resp.data = orjson.dumps(obj)
            return

        def complete(obj: dict[str, Any]) -> None:
            if keep:
                self._keep(ctx, obj, inputs, history)

        encoder = codec.StreamEncoder(codec.new_response_id(), body["model"], echoed, complete)
        resp.content_type = "text/event-stream"
        resp.set_header("cache-control", "no-cache")
        resp.set_header("x-accel-buffering", "no")
        resp.stream = self._sse(ctx, outcome, encoder, req.env.get("gunicorn.socket"))
        ctx.streaming = True

    def _keep(self, ctx: RequestContext, obj: dict[str, Any], inputs: list[dict[str, Any]],
              history: list[dict[str, Any]] | None) -> None:
        """Store a translated answer; one Redis could not take says so (``store: false``) rather than pretend."""
        conversation = [*(history or []), *inputs, *obj["output"]]
        if not self.store.save_stored(ctx.client_id, obj, _with_ids(inputs), conversation):
            obj["store"] = False

    def _own(self, ctx: RequestContext, response_id: str, keep: bool) -> None:
        """A relayed response: which provider holds it, so its client (only) may read or continue it."""
        if keep and response_id and ctx.provider not in (None, "cache"):
            self.store.save_relayed(ctx.client_id, response_id, ctx.provider)

    def _relayed(self, ctx: RequestContext, item: RelayedEvent, strip_usage: bool) -> bytes:  # type: ignore[override]
        """A relayed event; its ``response.created`` says who holds the response."""
        for ev in item.events:
            if isinstance(ev, StreamStart):
                self._own(ctx, ev.id, True)
        return ChatResource._relayed(ctx, item, strip_usage)


class StoredResponseResource:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``."""

    def __init__(self, store: ResponseStore, router: Router, relay: StoredResponseRelay) -> None:
        self.store = store
        self.router = router
        self.relay = relay

    def _record(self, ctx: RequestContext, response_id: str) -> dict[str, Any]:
        record = self.store.load(ctx.client_id, response_id)
        if record is UNAVAILABLE:
            raise store_unavailable(f"Response '{response_id}' cannot be looked up")
        if record is None or record.get("kind") not in ("stored", "relayed") or (
                record["kind"] == "relayed" and record.get("provider") not in self.router.providers):
            raise NotFound(f"Response with id '{response_id}' not found.", code="not_found")
        return record

    def _relay(self, req: falcon.Request, resp: falcon.Response, record: dict[str, Any], path: str) -> None:
        ctx: RequestContext = req.context.gw
        provider = self.router.providers[record["provider"]]
        ctx.provider = provider.name
        status, raw = self.relay.call(provider, req.method, path, req.query_string,
                                      {"x-request-id": ctx.request_id})
        resp.status = ctx.status = status
        resp.content_type = "application/json"
        resp.data = raw

    def on_get(self, req: falcon.Request, resp: falcon.Response, response_id: str) -> None:
        record = self._record(req.context.gw, response_id)
        if record["kind"] == "relayed":
            return self._relay(req, resp, record, f"/{response_id}")
        resp.content_type = "application/json"
        resp.data = orjson.dumps(record["response"])

    def on_delete(self, req: falcon.Request, resp: falcon.Response, response_id: str) -> None:
        ctx: RequestContext = req.context.gw
        record = self._record(ctx, response_id)
        if record["kind"] == "relayed":
            self._relay(req, resp, record, f"/{response_id}")
            if resp.status >= 300:  # type: ignore[operator]
                return
        self.store.delete(ctx.client_id, response_id)
        if record["kind"] == "stored":
            resp.content_type = "application/json"
            resp.data = orjson.dumps({"id": response_id, "object": "response", "deleted": True})

    def on_get_input_items(self, req: falcon.Request, resp: falcon.Response, response_id: str) -> None:
        record = self._record(req.context.gw, response_id)
        if record["kind"] == "relayed":
            return self._relay(req, resp, record, f"/{response_id}/input_items")
        query = {k: v[-1] for k, v in parse_qs(req.query_string).items()}
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest(f"Invalid value for 'order': expected 'asc' or 'desc', got '{order[:20]}'",
                                 param="order")
        try:
            limit = int(query.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise InvalidRequest("Invalid value for 'limit': expected an integer from 1 to 100", param="limit")
        items = list(record.get("input") or [])
        if order == "desc":
            items.reverse()
        after = query.get("after")
        if after is not None:
            ids = [item.get("id") for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        resp.content_type = "application/json"
        resp.data = orjson.dumps({"object": "list", "data": page,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None,
                                  "has_more": len(items) > limit})

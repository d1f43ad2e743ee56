"""Steps deferred until the response is out: when they run, what a failing one does, and the miss's L2 fill."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import falcon
import orjson
import pytest
import redis
from falcon.testing import create_environ
from prometheus_client import REGISTRY

from app.cache.keys import KEY_PREFIX
from app.context import RequestContext, defer
from app.factory import create_gateway
from app.http.app import EXCHANGE_ENVIRON, Exchange, GatewayApp
from tests.conftest import provider_env

pytestmark = pytest.mark.timeout(30)


def ctx_of(req: falcon.Request) -> RequestContext:
    return RequestContext(request_id="r1", endpoint="/t", dialect="openai", after=req.env[EXCHANGE_ENVIRON].steps)


class Recorder:
    """A resource that defers steps into ``events`` and answers whole, or as a stream."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_get_whole(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctx_of(req)
        defer(ctx, lambda: self.events.append("first"))
        defer(ctx, lambda: self.events.append("second"))
        resp.data = b"whole"

    def on_get_stream(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctx_of(req)

        def chunks() -> Iterator[bytes]:
            try:
                yield b"one"
                yield b"two"
            finally:
                self.events.append("stream ended")
                defer(ctx, lambda: self.events.append("fill"))

        resp.stream = chunks()

    def on_get_failing(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = ctx_of(req)
        defer(ctx, lambda: 1 / 0)
        defer(ctx, lambda: self.events.append("after the failure"))
        resp.data = b"ok"

    def on_get_exit(self, req: falcon.Request, resp: falcon.Response) -> None:
        defer(ctx_of(req), lambda: self.events.append("ran"))
        raise SystemExit(3)


@pytest.fixture
def recorder() -> tuple[GatewayApp, Recorder]:
    app, resource = GatewayApp(), Recorder()
    for suffix in ("whole", "stream", "failing", "exit"):
        app.add_route(f"/{suffix}", resource, suffix=suffix)
    return app, resource


def call(app: GatewayApp, path: str):  # type: ignore[no-untyped-def]
    return app(create_environ(path=path), lambda status, headers, exc_info=None: None)


def test_without_a_queue_a_step_runs_at_once():
    ran: list[int] = []
    defer(RequestContext(request_id="r", endpoint="/t", dialect="openai"), lambda: ran.append(1))
    assert ran == [1]


def test_steps_run_in_order_only_when_the_server_closes_the_body(recorder):
    app, resource = recorder
    body = call(app, "/whole")
    assert b"".join(body) == b"whole"
    assert resource.events == []  # every byte handed to the server, nothing run yet
    body.close()
    assert resource.events == ["first", "second"]


def test_a_step_queued_by_a_stream_as_it_ends_runs_at_close(recorder):
    app, resource = recorder
    body = call(app, "/stream")
    assert isinstance(body, Exchange)
    assert b"".join(body) == b"onetwo"
    assert resource.events == ["stream ended"]
    body.close()
    assert resource.events == ["stream ended", "fill"]


def test_a_client_that_hangs_up_mid_stream_still_gets_the_steps_run(recorder):
    app, resource = recorder
    body = call(app, "/stream")
    assert next(iter(body)) == b"one"
    body.close()  # what gunicorn does when a write fails: the generator is closed, then the steps run
    assert resource.events == ["stream ended", "fill"]


def test_a_failing_step_is_logged_and_the_rest_still_run(recorder, caplog):
    app, resource = recorder
    body = call(app, "/failing")
    with caplog.at_level(logging.ERROR, logger="llm_edge.after_response"):
        body.close()
    assert resource.events == ["after the failure"]
    assert "a step after the response failed" in caplog.text and "ZeroDivisionError" in caplog.text


def test_steps_run_when_the_app_raises_past_falcon(recorder):
    app, resource = recorder
    with pytest.raises(SystemExit):
        call(app, "/exit")
    assert resource.events == ["ran"]


def test_a_miss_fills_l2_only_after_its_answer_is_written(upstream, redis_server):
    gw = create_gateway(environ={**provider_env(upstream), "ENABLE_L2_CACHE": "true", "REDIS_URL": redis_server.url,
                                 "ENABLE_TRACING": "false", "REQUEST_TIMEOUT": "10"})
    client = redis.Redis.from_url(redis_server.url)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fill me later"}]})
    env = create_environ(path="/v1/chat/completions", method="POST", body=body,
                         headers={"content-type": "application/json"})
    statuses: list[str] = []
    answer = gw.app(env, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"] and orjson.loads(b"".join(answer))["choices"]
    assert client.keys(KEY_PREFIX + "*") == []  # the whole answer is out, the fill not yet sent
    answer.close()
    deadline = time.monotonic() + 5
    while not client.keys(KEY_PREFIX + "*") and time.monotonic() < deadline:
        time.sleep(0.01)  # a lone fill is sent without waiting for Redis's reply
    assert len(client.keys(KEY_PREFIX + "*")) == 1
    client.close()


def test_a_request_is_logged_and_counted_only_after_its_last_byte(upstream, caplog):
    gw = create_gateway(environ={**provider_env(upstream), "ENABLE_TRACING": "false"})
    in_flight = REGISTRY.get_sample_value("llm_edge_in_flight_requests") or 0.0
    env = create_environ(path="/v1/models", headers={"x-request-id": "req-after-last-byte"})
    with caplog.at_level(logging.INFO, logger="llm_edge.access"):
        answer = gw.app(env, lambda status, headers, exc_info=None: None)
        assert orjson.loads(b"".join(answer))["data"]
        assert not access_lines(caplog, "req-after-last-byte")  # every byte out, the request not yet recorded
        assert REGISTRY.get_sample_value("llm_edge_in_flight_requests") == in_flight + 1
        answer.close()
    (line,) = access_lines(caplog, "req-after-last-byte")
    assert line["status"] == 200 and line["endpoint"] == "/v1/models"
    assert REGISTRY.get_sample_value("llm_edge_in_flight_requests") == in_flight


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("request_id") == request_id]

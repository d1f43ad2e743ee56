"""A request the gateway itself refuses (a field the target's format cannot express) is the caller's 4xx and
nothing else: no provider error, no cache miss, cache header ``bypass``, no attempt, no upstream call."""

from __future__ import annotations

import logging

import pytest
from falcon.testing import TestClient
from prometheus_client import REGISTRY

from app.factory import create_gateway
from tests.conftest import provider_env

pytestmark = pytest.mark.timeout(30)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _provider_errors() -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "llm_edge_provider_errors"
               for s in m.samples if s.name == "llm_edge_provider_errors_total")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "claude-3-5-haiku-latest", "response_format": {"type": "json_object"},
                              "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 20, "top_k": 5,
                      "messages": [{"role": "user", "content": "hi"}]}),
])
def test_an_untranslatable_field_is_a_client_error_only(upstream, caplog, path, body, stream):
    gw = create_gateway(environ={**provider_env(upstream), "ENABLE_L2_CACHE": "false", "ENABLE_TRACING": "false"})
    client = TestClient(gw.app)
    errors, misses = _provider_errors(), _sample("llm_edge_cache_misses_total", tier="l1")
    with caplog.at_level(logging.INFO, logger="llm_edge.access"):
        resp = client.simulate_post(path, json={**body, "stream": stream})
    assert resp.status_code == 400 and "not supported" in resp.text
    assert resp.headers["x-llm-edge-cache"] == "bypass"
    assert _provider_errors() == errors, "no provider was called: no provider error"
    assert _sample("llm_edge_cache_misses_total", tier="l1") == misses, "nor a cache miss"
    assert upstream.count() == 0
    line = [r for r in caplog.records if r.name == "llm_edge.access"][-1].fields
    assert line["attempts"] == 0 and line["status"] == 400

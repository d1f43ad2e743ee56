"""The access line never carries a key a client typed into the model field."""

from __future__ import annotations

import logging

from app.context import RequestContext
from app.observability.access import request_finished, request_started


def test_unrouted_model_names_are_scrubbed_and_capped(caplog):
    ctx = RequestContext(request_id="r1", endpoint="/v1/chat/completions", dialect="openai")
    ctx.requested_model = "sk-edge-AcmeClientKey81c3f0e29ab74d65"
    request_started(ctx)
    with caplog.at_level(logging.INFO, logger="llm_edge.access"):
        request_finished(ctx)
    fields = caplog.records[-1].fields
    assert "AcmeClientKey" not in str(fields) and fields["model"] == "[redacted]"
    ctx2 = RequestContext(request_id="r2", endpoint="/v1/chat/completions", dialect="openai")
    ctx2.requested_model = "x" * 1000
    request_started(ctx2)
    with caplog.at_level(logging.INFO, logger="llm_edge.access"):
        request_finished(ctx2)
    assert caplog.records[-1].fields["model"] == "x" * 128


def test_the_deployment_that_answered_is_named_only_when_there_was_one(caplog):
    """``provider`` says whose API answered; of a model spread over deployments, ``deployment`` says which."""
    lines = []
    for deployment in ("east-second-key", None):
        ctx = RequestContext(request_id="r3", endpoint="/v1/chat/completions", dialect="openai")
        ctx.provider, ctx.model, ctx.deployment = "azure-east", "gpt4o-a", deployment
        request_started(ctx)
        with caplog.at_level(logging.INFO, logger="llm_edge.access"):
            request_finished(ctx)
        lines.append(caplog.records[-1].fields)
    assert lines[0]["deployment"] == "east-second-key" and lines[0]["provider"] == "azure-east"
    assert "deployment" not in lines[1]

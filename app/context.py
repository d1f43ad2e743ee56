"""Per-request state: the only mutable state a request owns.

Lives on Falcon's ``req.context``; middleware, resources and pipeline stages
fill it in as the request travels, and the request's one ending
(``Exchange.finish``, ``app/http/app.py``) reads it for the access line and
metrics. Nothing here is ever shared between requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from app.formats.canonical import Usage

if TYPE_CHECKING:
    from app.http.resources.parse_memo import ParsedBody

Dialect = Literal["openai", "anthropic", "responses"]

log = logging.getLogger("llm_edge.after_response")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: str
    dialect: Dialect
    started: float = field(default_factory=time.monotonic)
    client_id: str = "anonymous"
    client_addr: str | None = None  # the caller's IP (X-Forwarded-For only from FORWARDED_ALLOW_IPS peers)
    tier: str = "free"
    traceparent: str | None = None
    requested_model: str | None = None
    provider: str | None = None  # that answered, or "cache"
    deployment: str | None = None  # the deployment that answered, when the target was one of a model's deployments
    model: str | None = None  # upstream model that produced the answer
    cache: str = "bypass"
    status: int = 200
    stream: bool = False
    streaming: bool = False  # an SSE body is out with the server and its end not yet handed over (499 if never)
    usage: Usage | None = None
    cost_cents: float = 0.0
    first_token_at: float | None = None
    error_type: str | None = None
    attempts: int = 0
    span: Any = None  # the request's OpenTelemetry span, when tracing is on
    prompt: str | None = None  # the prompt's text, only with LOG_PROMPTS=true
    parsed: ParsedBody | None = None  # the body as parsed (perhaps remembered), with its cache keys
    after: list[Callable[[], None]] | None = None  # steps run as the request finishes (app/http/app.py)
    # The caller's headers that go on to providers, by wire format (anthropic-beta, ...); None: none.
    forward: dict[str, dict[str, str]] | None = None
    upstream_headers: Mapping[str, str] | None = None  # the last provider response's headers
    dropped: tuple[str, ...] = ()  # caller fields the answering target's translation left out (JSON paths)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note_upstream_headers(self, headers: Mapping[str, str]) -> None:
        self.upstream_headers = headers


Step = Callable[[], None]


def defer(ctx: RequestContext, step: Step) -> None:
    """Run ``step`` once the response is written, or now when nothing will run it later."""
    if ctx.after is None:
        step()
    else:
        ctx.after.append(step)


def run_steps(steps: list[Step]) -> None:
    """Every queued step, in order, including steps queued by steps; one failing never stops the rest."""
    while steps:
        step = steps.pop(0)
        try:
            step()
        except Exception:
            log.exception("a step after the response failed")

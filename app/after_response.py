"""Work that can wait until the answer is out: today, the L2 fill of a miss.

A client waits for the last byte of its answer, not for the gateway's
bookkeeping. A miss used to send its L2 fill (a ``SET``, its reply read later)
before the answer went out, and Redis, woken on the worker's core, took its
turn on the request's critical path. Now the fill is a *deferred step*: queued
on the request and run by ``GatewayApp`` when the WSGI server closes the
response iterable, which every server does after the last byte is written
(PEP 3333; gunicorn in a ``finally``, also when the client has hung up).
Another replica still finds the entry about when the answer reaches the
client (microseconds, at most a few milliseconds, after instead of before).

What stays before the answer, because the next request must see it: the L1
fill, the spend tally and token rate limits. The access line and the request
metrics stay there too for now: deferring them as well made paced misses
faster and hits no slower, but a request would be counted just after its
answer, and tests that read the count right after one must first learn to
wait for it (README, Performance, fifth pass).

A request context made outside ``GatewayApp`` (unit tests, scripts) has no
queue: ``defer`` then runs the step at once, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import falcon

from app.context import RequestContext

log = logging.getLogger("llm_edge.after_response")

AFTER_ENVIRON = "llm_edge.after_response"  # the request's queue of deferred steps, in the WSGI environ

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


class ClosingBody:
    """The response iterable, whose ``close`` (after the last byte) closes the body, then runs the steps."""

    __slots__ = ("body", "steps")

    def __init__(self, body: Iterable[bytes], steps: list[Step]) -> None:
        self.body = body
        self.steps = steps

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()  # a stream's generator ends here when the client left early; its finally may defer steps
        finally:
            run_steps(self.steps)


class GatewayApp(falcon.App):
    """``falcon.App`` that gives each request a queue of deferred steps and runs it after the response."""

    def __call__(self, env: dict[str, Any], start_response: Any) -> Iterable[bytes]:  # type: ignore[override]
        steps: list[Step] = []
        env[AFTER_ENVIRON] = steps
        try:
            body = super().__call__(env, start_response)
        except BaseException:
            run_steps(steps)
            raise
        if not steps and type(body) is list:
            return body  # a whole answer with nothing to do after it (a hit): no wrapper
        if isinstance(body, env.get("wsgi.file_wrapper") or ()):  # served by sendfile: keep the server's type
            run_steps(steps)
            return body
        return ClosingBody(body, steps)  # a stream may still queue steps (its fill) while it is written

"""Work that can wait until the answer is out: the access line, request metrics and the L2 fill.

A client waits for the last byte of its answer, not for the gateway's
bookkeeping. Such work is a *deferred step*: queued on the request and run by
``GatewayApp`` when the WSGI server closes the response iterable, which every
server does after the last byte is written (PEP 3333; gunicorn in a
``finally``, also when the client has hung up). Two kinds of step:

- the end of the request (``request_finished``: access line, request metrics,
  the request span), queued by the middleware for a whole answer and by the
  stream generator as a stream ends. Its duration runs past the last byte,
  as nginx's ``$request_time`` does; a scrape or log reader sees the request
  microseconds after its client does.
- a miss's L2 fill (a ``SET``, its reply read later). Sent before the answer,
  Redis, woken on the worker's core, took its turn on the request's critical
  path; now another replica finds the entry microseconds to a few
  milliseconds after the client has the answer, instead of just before.

What stays before the answer, because the next request must see it: the L1
fill, the spend tally and token rate limits.

A request context made outside ``GatewayApp`` (unit tests, scripts) has no
queue: ``app.context.defer`` then runs the step at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import falcon

from app.context import Step, run_steps

AFTER_ENVIRON = "llm_edge.after_response"  # the request's queue of deferred steps, in the WSGI environ

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
        return ClosingBody(body, steps)  # a stream may still queue steps (its fill, its end) while it is written

"""GET (and HEAD) /health, /health/live, /health/ready: never a key, never a provider call.

``/health`` asks each registered check (cheap, local state only: breaker
states, whether Redis is being skipped, which providers have keys) and
reports the worst: ``down`` answers 503, ``degraded`` still answers 200.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon
import orjson

from app import __version__
from app.health import HealthCheck, Status
from app.http.draining import DrainState

_RANK = {"ok": 0, "degraded": 1, "down": 2}


def _json(resp: falcon.Response, status: int, body: dict[str, Any]) -> None:
    resp.status = status
    resp.content_type = "application/json"
    resp.data = orjson.dumps(body)


class HealthResource:
    def __init__(self, checks: Mapping[str, HealthCheck], draining: DrainState) -> None:
        self.checks = dict(checks)
        self.draining = draining

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        results = {name: check() for name, check in self.checks.items()}
        overall: Status = "ok"
        for result in results.values():
            if _RANK[result.status] > _RANK[overall]:
                overall = result.status
        body = {
            "status": overall,
            "version": __version__,
            "draining": self.draining.draining,
            "checks": {name: {"status": r.status, "detail": r.detail} for name, r in results.items()},
        }
        _json(resp, 503 if overall == "down" else 200, body)

    def on_get_live(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, 200, {"status": "ok"})

    def on_get_ready(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.draining.draining:
            resp.set_header("retry-after", "5")
            _json(resp, 503, {"status": "draining"})
        else:
            _json(resp, 200, {"status": "ready"})

    # Load balancers probe with HEAD: the same status and headers, no body (Falcon drops it for HEAD).
    on_head = on_get
    on_head_live = on_get_live
    on_head_ready = on_get_ready

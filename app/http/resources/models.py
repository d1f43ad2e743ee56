"""GET /v1/models: every model name the gateway routes, in OpenAI's list shape."""

from __future__ import annotations

import time

import falcon
import orjson

from app.providers.routing import Router


class ModelsResource:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.created = int(time.time())

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = []
        for name in self.router.model_names():
            owner = self.router.resolve(name)[0].provider.name
            data.append({"id": name, "object": "model", "created": self.created, "owned_by": owner})
        resp.content_type = "application/json"
        resp.data = orjson.dumps({"object": "list", "data": data})

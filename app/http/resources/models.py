"""GET /v1/models and GET /v1/models/{id}: the models the gateway routes, in OpenAI's shapes.

The list holds every configured model whose provider has a key; one model is answered for those
and for every name the router reaches by ``provider/model`` or by prefix (ids may hold ``/``,
hence the ``path`` route). Anything else is 404 ``model_not_found``, as OpenAI answers it.
Reference: https://platform.openai.com/docs/api-reference/models/retrieve
"""

from __future__ import annotations

import time
from typing import Any

import falcon
import orjson

from app.errors import ModelNotFound, NoHealthyProvider
from app.formats.common import shown_model
from app.providers.routing import Router

# Falcon's route for one model: ``path`` takes the rest of the URL, slashes included.
MODEL_ROUTE = "/v1/models/{model_id:path}"


class ModelsResource:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.created = int(time.time())

    def _card(self, name: str) -> dict[str, Any]:
        owner = self.router.resolve(name)[0].provider.name
        return {"id": name, "object": "model", "created": self.created, "owned_by": owner}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = [self._card(name) for name in self.router.model_names()]
        resp.content_type = "application/json"
        resp.data = orjson.dumps({"object": "list", "data": data})

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, model_id: str) -> None:
        try:
            card = self._card(model_id)
        except (ModelNotFound, NoHealthyProvider):
            raise ModelNotFound(f"The model '{shown_model(model_id)}' does not exist or is not routed by this "
                                "gateway", param="model") from None
        resp.content_type = "application/json"
        resp.data = orjson.dumps(card)

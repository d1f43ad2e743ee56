"""Stored Responses API answers, per client, in Redis: what makes ``previous_response_id`` work for every model.

Two kinds of record under ``llm-edge:responses:<client id>:<response id>`` (one ``GET`` / ``SET ... EX``):

* **stored** (a translated target answered, ``store`` not false): the response object, the request's input
  items (``GET /v1/responses/{id}/input_items``) and the whole conversation up to and including its output
  (``history``), so the next turn's ``previous_response_id`` is one read, whatever the model;
* **relayed** (a provider with the Responses API answered and stores it itself): only which provider
  holds it, so that ``GET``/``DELETE`` by id go there, and only for the client that created it.

The client id is part of the key: another client's id is simply not found (404). Records live
``RESPONSES_TTL_SECONDS``; the Redis's memory policy may drop them sooner.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.resilience.redis_guard import RedisGuard

UNAVAILABLE: Any = object()  # Redis could not be asked: neither found nor missing


class ResponseStore:
    def __init__(self, guard: RedisGuard, ttl_seconds: int) -> None:
        self.guard = guard
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def key(client_id: str, response_id: str) -> str:
        return f"llm-edge:responses:{client_id}:{response_id}"

    def load(self, client_id: str, response_id: str) -> dict[str, Any] | None:
        """The record, None when there is none, ``UNAVAILABLE`` when Redis cannot be asked."""
        raw = self.guard.command("responses_get", UNAVAILABLE, "GET", self.key(client_id, response_id))
        if raw is UNAVAILABLE or raw is None:
            return raw
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None

    def save(self, client_id: str, response_id: str, record: dict[str, Any]) -> bool:
        """True once Redis holds it."""
        reply = self.guard.command("responses_set", None, "SET", self.key(client_id, response_id),
                                   orjson.dumps(record), "EX", self.ttl_seconds)
        return reply is not None

    def save_stored(self, client_id: str, response: dict[str, Any], inputs: list[dict[str, Any]],
                    history: list[dict[str, Any]]) -> bool:
        return self.save(client_id, response["id"], {"kind": "stored", "response": response, "input": inputs,
                                                     "history": history})

    def save_relayed(self, client_id: str, response_id: str, provider: str) -> bool:
        return self.save(client_id, response_id, {"kind": "relayed", "provider": provider})

    def delete(self, client_id: str, response_id: str) -> Any:
        """Keys removed (0 or 1), or ``UNAVAILABLE``."""
        return self.guard.command("responses_delete", UNAVAILABLE, "DEL", self.key(client_id, response_id))

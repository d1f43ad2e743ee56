"""Azure OpenAI's data plane, as far as chat completions go: its URLs, its auth and its content filter.

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=V``: the deployment is in the path;
  without ``api-version`` Azure answers 404 ``Resource not found``, an unknown one is 400.
- ``POST /openai/v1/chat/completions``: the deployment name is the body's ``model``; no ``api-version``.
- Auth: an ``api-key`` header, or ``Authorization: Bearer`` (a Microsoft Entra ID token); neither, or not
  the emulator's key (when it has one), is 401 ``Access denied``.
- Content filter: a prompt holding ``PROMPT_TRIGGER`` is refused with 400 ``code: content_filter``
  (``innererror.code: ResponsibleAIPolicyViolation`` and the categories); an answer that would hold
  ``OUTPUT_TRIGGER`` stops with ``finish_reason: content_filter``. Every answer carries
  ``prompt_filter_results`` and per-choice ``content_filter_results``; a stream opens with Azure's chunk that
  has no choices and the prompt's filter results.

Reference: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference (chat completions, content
filtering). The body itself is checked and answered as OpenAI's (``openai.validate`` / ``openai.answer``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote

from . import openai
from .answers import text_of
from .wire import ApiError, data_event, loads

ID_HEADER = "apim-request-id"
PROMPT_TRIGGER = "FILTERME_PROMPT"
OUTPUT_TRIGGER = "FILTERME_OUTPUT"
API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
DEPLOYMENT_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
V1_PATH = "/openai/v1/chat/completions"
CATEGORIES = ("hate", "self_harm", "sexual", "violence")

bad_json = openai.bad_json
no_body = openai.no_body
stream_error = openai.stream_error
garbage_stream = openai.garbage_stream


def error_body(status: int, message: str) -> dict[str, Any]:
    """Azure's error shape: a code (often the status as text) and a message, no ``type``."""
    return {"error": {"code": str(status), "message": message}}


def render_error(err: ApiError) -> dict[str, Any]:
    return {"error": {"code": err.code, "message": err.message, **getattr(err, "extra", {})}}


def _azure_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(message, status, None, None, code)


def not_found(method: str = "POST", path: str = "") -> ApiError:
    return _azure_error(404, "404", "Resource not found")


def check_request(headers: dict[str, str], key: str | None) -> None:
    """An ``api-key`` header or a bearer token; when the emulator has a key, it must be that one."""
    given = headers.get("api-key")
    if given is None:
        auth = headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    if given is None or (key is not None and given != key):
        raise _azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                                       "Make sure to provide a valid key for an active subscription and use a "
                                       "correct regional API endpoint for your resource.")


def _filter_results(filtered: str | None = None) -> dict[str, Any]:
    return {c: {"filtered": c == filtered, "severity": "medium" if c == filtered else "safe"} for c in CATEGORIES}


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": _filter_results()}]


def deployment_of(path: str, query: str, body: Any) -> str:
    """The deployment a request names, checking the URL as Azure does (404 / 400)."""
    match = DEPLOYMENT_PATH.match(path)
    if match is not None:
        versions = parse_qs(query).get("api-version")
        if not versions:
            raise not_found()
        if not API_VERSION_RE.match(versions[0]):
            raise _azure_error(400, "BadRequest", "API version not supported")
        return unquote(match.group(1))
    if path == V1_PATH:
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            raise openai.missing("model")
        return model
    raise not_found()


def chat(path: str, query: str, body: Any, stream: bool, deployments: Sequence[str] | None) -> Any:
    """The chat completion of an Azure deployment: OpenAI's answer with Azure's filter fields."""
    deployment = deployment_of(path, query, body)
    if deployments is not None and deployment not in deployments:
        raise _azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. "
                                                      "If you created the deployment within the last 5 minutes, "
                                                      "please wait a moment and try again.")
    if not isinstance(body, dict):
        raise no_body()
    body = {"model": deployment, **body}
    openai.validate(body)
    prompt = " ".join(text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    if PROMPT_TRIGGER in prompt:
        err = _azure_error(400, "content_filter", "The response was filtered due to the prompt triggering "
                                                  "Azure OpenAI's content management policy.")
        err.extra = {"param": "prompt", "status": 400, "innererror": {  # type: ignore[attr-defined]
            "code": "ResponsibleAIPolicyViolation", "content_filter_result": _filter_results("violence")}}
        raise err
    ans = openai.answer(body)
    filtered = OUTPUT_TRIGGER in ans.text
    if filtered:  # the answer stops where the filter caught it
        ans.text = ans.text.split(OUTPUT_TRIGGER)[0].rstrip()
    if stream:
        return _events(ans, deployment, body, filtered)
    out = openai.completion(ans, deployment)
    out["prompt_filter_results"] = _prompt_filter_results()
    for choice in out["choices"]:
        choice["content_filter_results"] = _filter_results("violence" if filtered else None)
        if filtered:
            choice["finish_reason"] = "content_filter"
    return out


def _events(ans: Any, deployment: str, body: dict[str, Any], filtered: bool) -> list[bytes]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = openai.events(ans, deployment, include_usage)
    opening = data_event({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                          "prompt_filter_results": _prompt_filter_results()})
    out = [opening]
    for raw in events:
        if not raw.startswith(b"data: {"):
            out.append(raw)
            continue
        chunk = loads(raw[6:].strip())
        for choice in chunk.get("choices", []):
            last = choice.get("finish_reason") is not None
            choice["content_filter_results"] = _filter_results("violence" if filtered and last else None)
            if filtered and last:
                choice["finish_reason"] = "content_filter"
        out.append(data_event(chunk))
    return out

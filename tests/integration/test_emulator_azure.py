"""The emulator's Azure OpenAI side refuses what Azure refuses, so gateway tests against it can fail.

Reference: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference (URL shapes, ``api-version``,
``api-key``); https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter (the filter's
fields and the 400 with ``code: content_filter``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.emulator_support import Emulator, call, oa_body, parse_sse

KEY = "azure-emu-key"
DEPLOYMENT = "/openai/deployments/gpt4o/chat/completions"
OK = {"api-key": KEY, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def emu() -> Any:
    with Emulator(azure_key=KEY, azure_deployments=["gpt4o"]) as server:
        yield server


def post(emu: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, raw = call(emu, "POST", path, body, OK if headers is None else headers)
    return status, json.loads(raw) if raw.startswith(b"{") else raw


def test_the_deployment_url_answers_with_azures_filter_fields(emu):
    status, body = post(emu, DEPLOYMENT + "?api-version=2024-10-21", oa_body("hi"))
    assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: hi"
    assert body["model"] == "gpt4o"
    assert body["prompt_filter_results"][0]["content_filter_results"]["self_harm"] == {
        "filtered": False, "severity": "safe"}
    assert body["choices"][0]["content_filter_results"]["hate"]["filtered"] is False


def test_without_api_version_azure_says_resource_not_found(emu):
    assert post(emu, DEPLOYMENT, oa_body()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    status, body = post(emu, DEPLOYMENT + "?api-version=yesterday", oa_body())
    assert status == 400 and body["error"]["message"] == "API version not supported"


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json"},
    {"api-key": "not-the-key", "Content-Type": "application/json"},
    {"Authorization": "Bearer not-the-key", "Content-Type": "application/json"},
])
def test_a_missing_or_wrong_key_is_401(emu, headers):
    status, body = post(emu, DEPLOYMENT + "?api-version=2024-10-21", oa_body(), headers)
    assert status == 401 and body["error"]["code"] == "401"


def test_an_entra_bearer_token_is_accepted_too(emu):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert post(emu, DEPLOYMENT + "?api-version=2024-10-21", oa_body(), headers)[0] == 200


def test_the_v1_url_takes_the_deployment_from_the_body(emu):
    status, body = post(emu, "/openai/v1/chat/completions", oa_body(model="gpt4o"))
    assert status == 200 and body["model"] == "gpt4o"
    status, body = post(emu, "/openai/v1/chat/completions", oa_body(model="elsewhere"))
    assert status == 404 and body["error"]["code"] == "DeploymentNotFound"


def test_a_filtered_prompt_is_a_400_content_filter(emu):
    status, body = post(emu, DEPLOYMENT + "?api-version=2024-10-21", oa_body("FILTERME_PROMPT please"))
    assert status == 400
    assert body["error"]["code"] == "content_filter"
    assert body["error"]["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert body["error"]["innererror"]["content_filter_result"]["violence"]["filtered"] is True


def test_a_filtered_stream_opens_with_prompt_results_and_ends_with_content_filter(emu):
    status, _, raw = call(emu, "POST", DEPLOYMENT + "?api-version=2024-10-21",
                          oa_body("say FILTERME_OUTPUT", stream=True), OK)
    assert status == 200
    chunks = [json.loads(data) for _, data in parse_sse(raw) if data != "[DONE]"]
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[1:] if c["choices"]]
    assert finishes[-1] == "content_filter" and finishes[:-1] == [None] * (len(finishes) - 1)
    assert chunks[-1]["choices"][0]["content_filter_results"]["violence"]["filtered"] is True

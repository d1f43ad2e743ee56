"""Azure OpenAI through the gateway: the official openai SDK relayed, the anthropic SDK translated.

The fake is the emulator's Azure side (scripts/emulator/azure.py), which checks what Azure checks: the
deployment URL with a valid ``api-version`` (404 ``Resource not found`` without one), the ``v1`` URL with
the deployment in ``model``, and the ``api-key`` header. Reference:
https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference (chat completions; content filtering:
https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter). What Anthropic callers
get for a filtered answer is Anthropic's own ``stop_reason: "refusal"``
(https://docs.anthropic.com/en/api/handling-stop-reasons).
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.conftest import emulator_module
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)

AZURE_KEY = "azure-test-key-0123456789abcdef"
API_VERSION = "2024-10-21"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def azure_emu():
    emu = emulator_module.Emulator(azure_key=AZURE_KEY, azure_deployments=["gpt4o-prod", "gpt4o-v1"]).start()
    yield emu
    emu.stop()


@pytest.fixture
def azure(azure_emu):
    azure_emu.reset()
    yield azure_emu
    azure_emu.reset()


@pytest.fixture(scope="module")
def gateway(azure_emu, tmp_path_factory):
    models = tmp_path_factory.mktemp("azure") / "models.yaml"
    models.write_text(f"""
providers:
  azure-east:
    type: azure
    base_url: {azure_emu.url}
    api_key_env: AZURE_EAST_KEY
  azure-v1:
    type: azure
    endpoint: v1
    base_url: {azure_emu.url}
    api_key_env: AZURE_EAST_KEY
models:
  gpt-4o-azure:
    provider: azure-east
    model: gpt4o-prod
  gpt-4o-v1:
    provider: azure-v1
    model: gpt4o-v1
  missing-deployment:
    provider: azure-east
    model: not-deployed
""")
    gw = GatewayProcess({"MODELS_FILE": str(models), "AZURE_EAST_KEY": AZURE_KEY, "AZURE_OPENAI_API_VERSION":
                         API_VERSION, "L1_CACHE_SIZE": "0", "CACHE_COALESCING": "false"}).start()
    yield gw
    gw.stop()


@pytest.fixture
def oa(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, timeout=10)


@pytest.fixture
def an(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0, timeout=10)


def assert_sent_to_azure(azure, deployment_url: bool) -> None:
    sent = azure.last()
    assert sent.headers["api-key"] == AZURE_KEY
    assert "authorization" not in sent.headers  # Azure's key header, not OpenAI's bearer
    assert "client-key" not in json.dumps(sent.headers)
    if deployment_url:
        assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
        assert sent.query == f"api-version={API_VERSION}"
    else:
        assert sent.path == "/openai/v1/chat/completions" and sent.query == ""
        assert sent.body["model"] == "gpt4o-v1"


@pytest.mark.parametrize("model,deployment_url", [("gpt-4o-azure", True), ("gpt-4o-v1", False)])
def test_openai_sdk_relayed_to_azure(oa, azure, model, deployment_url):
    raw = oa.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hi"
    assert raw.headers["x-llm-edge-provider"] in ("azure-east", "azure-v1")
    body = json.loads(raw.content)  # relayed: Azure's own filter fields reach the caller
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert body["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"
    assert_sent_to_azure(azure, deployment_url)


@pytest.mark.parametrize("model,deployment_url", [("gpt-4o-azure", True), ("gpt-4o-v1", False)])
def test_openai_sdk_streams_from_azure(oa, azure, model, deployment_url):
    chunks = list(oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "one two"}],
                                             stream=True, stream_options={"include_usage": True}))
    # Azure's opening chunk (no choices, the prompt's filter results) comes through as it came.
    assert chunks[0].choices == [] and chunks[0].model_extra["prompt_filter_results"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two"
    assert chunks[-1].usage.completion_tokens == 3
    assert_sent_to_azure(azure, deployment_url)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_call_through_azure(oa, azure, stream):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        chunks = list(oa.chat.completions.create(model="gpt-4o-azure", messages=messages, tools=[WEATHER_TOOL],
                                                 stream=True))
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        name = calls[0].function.name
        args = "".join(tc.function.arguments or "" for tc in calls)
    else:
        msg = oa.chat.completions.create(model="gpt-4o-azure", messages=messages, tools=[WEATHER_TOOL]).choices[0]
        assert msg.finish_reason == "tool_calls"
        name, args = msg.message.tool_calls[0].function.name, msg.message.tool_calls[0].function.arguments
    assert name == "get_weather" and json.loads(args) == {"city": "test"}
    assert azure.last().body["tools"][0]["function"]["name"] == "get_weather"
    assert_sent_to_azure(azure, True)


def test_anthropic_sdk_translated_to_azure(an, azure):
    msg = an.messages.create(model="gpt-4o-azure", max_tokens=50, system="Be brief.",
                             messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].text == "Echo: hello there" and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 4
    sent = azure.last()
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert_sent_to_azure(azure, True)


def test_anthropic_sdk_streams_and_calls_tools_through_azure(an, azure):
    with an.messages.stream(model="gpt-4o-azure", max_tokens=50,
                            messages=[{"role": "user", "content": "one two"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two" and final.stop_reason == "end_turn"
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with an.messages.stream(model="gpt-4o-azure", max_tokens=50, tools=[tool],
                            messages=[{"role": "user", "content": "weather?"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].name == "get_weather" and final.content[-1].input == {"city": "test"}
    assert_sent_to_azure(azure, True)


# ---- the content filter, both directions

@pytest.mark.parametrize("stream", [False, True])
def test_a_filtered_answer_reaches_openai_callers_as_azure_sent_it(oa, azure, stream):
    messages = [{"role": "user", "content": "say FILTERME_OUTPUT now"}]
    if stream:
        chunks = list(oa.chat.completions.create(model="gpt-4o-azure", messages=messages, stream=True))
        last = [c for c in chunks if c.choices][-1].choices[0]
        assert last.finish_reason == "content_filter"
        assert last.model_extra["content_filter_results"]["violence"]["filtered"] is True
    else:
        choice = oa.chat.completions.create(model="gpt-4o-azure", messages=messages).choices[0]
        assert choice.finish_reason == "content_filter"
        assert choice.message.content == "Echo: say"
        assert choice.model_extra["content_filter_results"]["violence"]["filtered"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_a_filtered_answer_is_a_refusal_for_anthropic_callers(an, azure, stream):
    messages = [{"role": "user", "content": "say FILTERME_OUTPUT now"}]
    if stream:
        with an.messages.stream(model="gpt-4o-azure", max_tokens=50, messages=messages) as s:
            final = s.get_final_message()
    else:
        final = an.messages.create(model="gpt-4o-azure", max_tokens=50, messages=messages)
    assert final.stop_reason == "refusal"
    assert final.content[0].text == "Echo: say"


def test_a_filtered_prompt_is_a_400_with_azures_code_for_openai_callers(oa, azure):
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(model="gpt-4o-azure", messages=[{"role": "user", "content": "FILTERME_PROMPT"}])
    assert info.value.status_code == 400 and info.value.code == "content_filter"
    assert "content management policy" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:  # streamed: refused before the first byte, the same 400
        list(oa.chat.completions.create(model="gpt-4o-azure", stream=True,
                                        messages=[{"role": "user", "content": "FILTERME_PROMPT"}]))
    assert info.value.code == "content_filter"


def test_a_filtered_prompt_is_an_invalid_request_for_anthropic_callers(an, azure):
    with pytest.raises(anthropic.BadRequestError) as info:
        an.messages.create(model="gpt-4o-azure", max_tokens=50,
                           messages=[{"role": "user", "content": "FILTERME_PROMPT"}])
    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "content management policy" in info.value.body["error"]["message"]


# ---- what the fake refuses, the gateway reports without leaking the key

def test_a_deployment_azure_does_not_have_is_a_404_in_the_callers_format(oa, azure):
    with pytest.raises(openai.NotFoundError) as info:
        oa.chat.completions.create(model="missing-deployment", messages=[{"role": "user", "content": "hi"}])
    assert "deployment" in info.value.message.lower()
    assert AZURE_KEY not in info.value.message


def test_a_wrong_azure_key_is_the_gateways_credentials_error(azure_emu, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(f"providers:\n  az:\n    type: azure\n    base_url: {azure_emu.url}\n"
                      f"    api_key_env: AZ_KEY\nmodels:\n  g:\n    provider: az\n    model: gpt4o-prod\n")
    gw = GatewayProcess({"MODELS_FILE": str(models), "AZ_KEY": "wrong-key-0123456789"}).start()
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="c", max_retries=0, timeout=10)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="g", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 502 and "AZ_KEY" in info.value.message
        assert "wrong-key-0123456789" not in gw.logs()
    finally:
        gw.stop()

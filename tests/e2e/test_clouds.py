"""The official Anthropic and OpenAI SDKs reach Claude on the Bedrock fake and the Vertex fake through gunicorn.

The fakes (scripts/emulator/bedrock.py, vertex.py) check what the services check: Bedrock recomputes the
SigV4 signature with botocore's signer for the test key and its session token; Vertex wants a bearer
token its token endpoint issued to a service account whose RS256 assertion it verified with the public
key of a pair made here. References:
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html,
https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude,
https://developers.google.com/identity/protocols/oauth2/service-account#httprest.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import UNCACHED, Fault
from tests.support.processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)

AWS_KEY_ID = "AKIAEMULATORTEST0001"
AWS_SECRET = "emulator/secret+access/key0123456789abcd"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEmulatorSessionToken0123456789"
SA_EMAIL = "gateway@emulator-project.iam.gserviceaccount.com"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"
MODELS = [("claude-bedrock", "bedrock"), ("claude-vertex", "vertex")]
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OPENAI_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                   "parameters": WEATHER["input_schema"]}}


def service_account(emu, folder: Path) -> Path:
    """A service-account file whose token_uri is the fake's, with a key pair made for this test."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    emu.google.add(SA_EMAIL, "test-key-1", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    path = folder / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "emulator-project", "private_key_id": "test-key-1",
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": SA_EMAIL, "client_id": "1", "token_uri": emu.url + "/token"}))
    return path


def models_file(emu, folder: Path, credentials: Path) -> Path:
    path = folder / "models.yaml"
    path.write_text(f"""
providers:
  bedrock:
    type: bedrock
    region: us-east-1
    base_url: {emu.url}
  vertex:
    type: vertex
    project: emulator-project
    region: us-east5
    base_url: {emu.url}
    credentials_file: {credentials}
models:
  claude-bedrock:
    provider: bedrock
    model: {BEDROCK_MODEL}
  claude-vertex:
    provider: vertex
    model: {VERTEX_MODEL}
""")
    return path


@pytest.fixture(scope="module")
def cloud_gateway(emulator):
    emulator.aws.add(AWS_KEY_ID, AWS_SECRET, AWS_TOKEN)
    folder = Path(tempfile.mkdtemp(prefix="llm-edge-clouds-"))
    models = models_file(emulator, folder, service_account(emulator, folder))
    env = {"OPENAI_API_KEY": "unused", "ANTHROPIC_API_KEY": "unused", "OPENAI_BASE_URL": emulator.openai_base_url,
           "ANTHROPIC_BASE_URL": emulator.anthropic_base_url, "MODELS_FILE": str(models), "RETRY_ATTEMPTS": "1",
           "AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_TOKEN,
           "AWS_CONFIG_FILE": str(folder / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "REQUEST_TIMEOUT": "10", **UNCACHED}
    gw = GatewayProcess(env).start()
    yield gw
    gw.stop()


@pytest.fixture
def claude(cloud_gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=cloud_gateway.url, api_key="any", max_retries=0, timeout=15)


@pytest.fixture
def gpt_style(cloud_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=cloud_gateway.url + "/v1", api_key="any", max_retries=0, timeout=15)


def last_cloud_request(emu, platform: str):
    prefix = "/model/" if platform == "bedrock" else "/v1/projects/"
    return next(r for r in reversed(emu.requests) if r.path.startswith(prefix))


@pytest.mark.parametrize("model,platform", MODELS)
def test_anthropic_sdk_message(claude, upstream, model, platform):
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hello there"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07, fine-grained-tool-streaming-2025-05-14"})
    message = raw.parse()
    assert message.content[0].text == "Echo: hello there"
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 3
    assert raw.headers["x-llm-edge-provider"] == platform
    sent = last_cloud_request(upstream, platform)
    assert "model" not in sent.body and sent.body["system"] == "Be brief."
    if platform == "bedrock":
        assert sent.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        assert sent.body["anthropic_version"] == "bedrock-2023-05-31"
        assert sent.body["anthropic_beta"] == ["context-1m-2025-08-07", "fine-grained-tool-streaming-2025-05-14"]
        assert sent.headers["x-amz-security-token"] == AWS_TOKEN
        assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
    else:
        assert sent.path == ("/v1/projects/emulator-project/locations/us-east5/publishers/anthropic/models/"
                             f"{VERTEX_MODEL}:rawPredict")
        assert sent.body["anthropic_version"] == "vertex-2023-10-16"
        assert sent.headers["authorization"].startswith("Bearer ya29.emulator-")


@pytest.mark.parametrize("model,platform", MODELS)
def test_anthropic_sdk_stream_is_anthropic_sse(claude, upstream, model, platform):
    events = list(claude.messages.create(model=model, max_tokens=100, stream=True,
                                         messages=[{"role": "user", "content": "one two three"}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Echo: one two three"
    assert next(e for e in events if e.type == "message_delta").usage.output_tokens == 4
    sent = last_cloud_request(upstream, platform)
    if platform == "bedrock":
        assert sent.path.endswith("/invoke-with-response-stream") and "stream" not in sent.body
    else:
        assert sent.path.endswith(":streamRawPredict") and sent.body["stream"] is True


@pytest.mark.parametrize("model,platform", MODELS)
def test_anthropic_sdk_tools_streamed_then_tool_result(claude, upstream, model, platform):
    messages = [{"role": "user", "content": "weather in Paris?"}]
    with claude.messages.stream(model=model, max_tokens=100, tools=[WEATHER], messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "test"}
    follow = claude.messages.create(model=model, max_tokens=100, tools=[WEATHER], messages=[
        *messages, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rainy"}]}])
    assert follow.content[0].text == "Tool said: rainy"


@pytest.mark.parametrize("model,platform", MODELS)
def test_openai_sdk_completion_and_stream_translated(gpt_style, upstream, model, platform):
    completion = gpt_style.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi you"}])
    assert completion.choices[0].message.content == "Echo: hi you"
    assert completion.usage.prompt_tokens == 2 and completion.usage.completion_tokens == 3
    chunks = list(gpt_style.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                                    messages=[{"role": "user", "content": "a b c"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: a b c"
    assert chunks[-1].usage.completion_tokens == 4
    assert next(c for c in chunks if c.choices and c.choices[0].finish_reason).choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model,platform", MODELS)
def test_openai_sdk_tools(gpt_style, upstream, model, platform):
    chunks = list(gpt_style.chat.completions.create(model=model, stream=True, tools=[OPENAI_WEATHER],
                                                    messages=[{"role": "user", "content": "weather?"}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "test"}
    call_id = calls[0].id
    follow = gpt_style.chat.completions.create(model=model, tools=[OPENAI_WEATHER], messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"test"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"}])
    assert follow.choices[0].message.content == "Tool said: sunny"


def test_bedrock_throttling_is_a_429_rate_limit(claude, upstream):
    upstream.push_faults(Fault(status=429), path="/model/")
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-bedrock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "ThrottlingException" in info.value.message


def test_bedrock_model_not_ready_is_overloaded_and_falls_through(gpt_style, upstream):
    upstream.push_faults(Fault(status=429, headers={"x-amzn-ErrorType": "ModelNotReadyException"}), path="/model/")
    with pytest.raises(openai.APIStatusError) as info:
        gpt_style.chat.completions.create(model="claude-bedrock", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and "ModelNotReadyException" in info.value.message


def test_bedrock_validation_error_is_the_callers_400(claude, upstream):
    upstream.push_faults(Fault(status=400, message="messages: roles must alternate"), path="/model/")
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="claude-bedrock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "roles must alternate" in info.value.message


def test_bedrock_stream_exception_becomes_an_error_event(claude, gpt_style, upstream):
    upstream.push_faults(Fault(error_after=3, body="throttlingException", message="slow down"), path="/model/")
    with pytest.raises(anthropic.APIStatusError) as info:
        list(claude.messages.create(model="claude-bedrock", max_tokens=100, stream=True,
                                    messages=[{"role": "user", "content": "one two three"}]))
    assert "throttlingException: slow down" in str(info.value)
    upstream.push_faults(Fault(error_after=3, body="modelStreamErrorException"), path="/model/")
    with pytest.raises(openai.APIError) as err:
        list(gpt_style.chat.completions.create(model="claude-bedrock", stream=True,
                                               messages=[{"role": "user", "content": "one two three"}]))
    assert "modelStreamErrorException" in str(err.value)


def test_bedrock_bad_signature_is_an_auth_failure_and_no_secret_leaks(claude, upstream, cloud_gateway):
    upstream.aws.add(AWS_KEY_ID, "a-different-secret", AWS_TOKEN)  # the fake now expects another signature
    try:
        with pytest.raises(anthropic.APIStatusError) as info:
            claude.messages.create(model="claude-bedrock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    finally:
        upstream.aws.add(AWS_KEY_ID, AWS_SECRET, AWS_TOKEN)
    assert info.value.status_code == 502
    assert "InvalidSignatureException" in info.value.message and "signature we calculated" in info.value.message
    ok = claude.messages.create(model="claude-bedrock", max_tokens=10, messages=[{"role": "user", "content": "y"}])
    assert ok.content[0].text == "Echo: y"
    logs = cloud_gateway.logs()
    assert AWS_SECRET not in logs and AWS_TOKEN not in logs and "ya29.emulator-" not in logs


def test_vertex_refused_token_is_replaced_within_the_request(claude, upstream):
    """A token Vertex refuses (401: revoked, or its hour up early) costs the caller nothing: the attempt
    drops it, fetches another from the token endpoint and sends the request once more."""
    claude.messages.create(model="claude-vertex", max_tokens=10, messages=[{"role": "user", "content": "warm"}])
    issued = upstream.google.issued
    upstream.google.expire_tokens()  # the fake's clock says every issued token is past its hour
    ok = claude.messages.create(model="claude-vertex", max_tokens=10, messages=[{"role": "user", "content": "z"}])
    assert ok.content[0].text == "Echo: z"
    assert upstream.google.issued == issued + 1


def test_vertex_refusing_the_new_token_too_is_an_auth_failure(claude, upstream):
    """Refused twice (the account lost its role, say): one 502 naming the credentials, no token in it."""
    for _ in range(2):
        upstream.push_faults(Fault(status=401, message="Request had invalid authentication credentials."),
                             path="/v1/projects/")
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model="claude-vertex", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and "Google credentials (HTTP 401)" in info.value.message
    assert "ya29" not in info.value.message
    ok = claude.messages.create(model="claude-vertex", max_tokens=10, messages=[{"role": "user", "content": "y"}])
    assert ok.content[0].text == "Echo: y"


def test_vertex_quota_429_is_passed_back(claude, upstream):
    upstream.push_faults(Fault(status=429, message="Quota exceeded for aiplatform.googleapis.com/online_prediction"),
                         path="/v1/projects/")
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-vertex", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "Quota exceeded" in info.value.message


def test_count_tokens_on_a_cloud_is_estimated(cloud_gateway, upstream):
    client = anthropic.Anthropic(base_url=cloud_gateway.url, api_key="any", max_retries=0, timeout=15)
    raw = client.messages.with_raw_response.count_tokens(model="claude-bedrock",
                                                         messages=[{"role": "user", "content": "a b c"}])
    assert raw.headers["x-llm-edge-token-count"] == "estimate" and raw.parse().input_tokens > 0
    assert not any(r.path.startswith("/model/") for r in upstream.requests)


def test_aws_secrets_echoed_in_an_error_are_redacted(claude, upstream):
    upstream.push_faults(Fault(status=400, message=f"bad token {AWS_TOKEN} for key {AWS_SECRET}"), path="/model/")
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="claude-bedrock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert AWS_TOKEN not in info.value.message and AWS_SECRET not in info.value.message
    assert info.value.message.count("[redacted]") == 2

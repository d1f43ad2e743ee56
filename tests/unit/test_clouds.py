"""Bedrock and Vertex AI pieces without a network: event-stream decoding, body rewriting, signing, errors.

References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html
(the ResponseStream members: chunk with base64 bytes, the exceptions and their statuses),
https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages-request-response.html
(the body: anthropic_version bedrock-2023-05-31, anthropic_beta, no model),
https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude (rawPredict's URL and
anthropic_version vertex-2023-10-16), https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html
(InvokeModel's errors).
"""

from __future__ import annotations

import base64
import json
import re

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from app.config.settings import ConfigError, Settings
from app.errors import InvalidRequest, UpstreamError, UpstreamRejected, UpstreamTimeout, classify
from app.formats.relay import observe_stream, split_events
from app.providers import eventstream
from app.providers.bedrock import BedrockAdapter, error_type
from app.providers.platforms import rewrite_body
from app.providers.routing import Provider, Router, Target
from app.providers.vertex import VertexAdapter
from tests.conftest import emulator_module

fake_stream = emulator_module.eventstream
fake_bedrock = emulator_module.bedrock

# Real-shaped Anthropic stream events as Bedrock carries them (message_stop with Bedrock's metrics).
EVENTS = [
    {"type": "message_start", "message": {"id": "msg_bdrk_01", "type": "message", "role": "assistant",
                                          "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None,
                                          "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 2}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 12, "outputTokenCount": 2,
                                                                  "invocationLatency": 321, "firstByteLatency": 210}},
]


def chunk_frame(event: dict) -> bytes:
    payload = {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "abcd"}
    return fake_stream.event(json.dumps(payload).encode())


def bedrock_provider(**options: str) -> Provider:
    return Provider("bedrock", "anthropic", "", None, None, False,
                        platform="bedrock", options={"region": "us-west-2", **options})


def test_fake_frames_round_trip_through_botocores_parser():
    frames = b"".join(chunk_frame(e) for e in EVENTS) + fake_stream.exception("throttlingException",
                                                                               b'{"message":"slow"}')
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    messages = list(buffer)
    assert [m.headers[":message-type"] for m in messages] == ["event"] * 6 + ["exception"]
    assert messages[0].headers[":event-type"] == "chunk"
    decoded = json.loads(base64.b64decode(json.loads(messages[2].payload)["bytes"]))
    assert decoded == EVENTS[2]
    assert messages[-1].headers[":exception-type"] == "throttlingException"


def test_event_stream_split_anywhere_becomes_anthropic_sse():
    body = b"".join(chunk_frame(e) for e in EVENTS)
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]  # frames cut mid-prelude, mid-header, mid-payload
    sse = b"".join(eventstream.anthropic_sse(pieces, "bedrock"))
    relayed = b"".join(r.raw for r in observe_stream([sse], "anthropic"))  # the observer accepts every event
    events = split_events(relayed)
    assert [e.split(b"\n", 1)[0] for e in events] == [f"event: {e['type']}".encode() for e in EVENTS]
    assert orjson.loads(events[2].split(b"data: ", 1)[1]) == EVENTS[2]


def test_stream_exception_is_an_anthropic_error_event():
    body = chunk_frame(EVENTS[0]) + fake_stream.exception("modelStreamErrorException",
                                                          b'{"message":"The model stopped","originalStatusCode":500}')
    out = b"".join(eventstream.anthropic_sse([body], "bedrock"))
    error = out.split(b"\n\n")[1]
    assert error.startswith(b"event: error\ndata: ")
    assert orjson.loads(error.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "api_error", "message": "Bedrock modelStreamErrorException: The model stopped"}}
    throttled = b"".join(eventstream.anthropic_sse([fake_stream.exception("throttlingException", b"{}")], "b"))
    assert b'"rate_limit_error"' in throttled


def test_broken_frame_is_a_bad_response():
    frame = bytearray(chunk_frame(EVENTS[0]))
    frame[-1] ^= 0xFF  # message CRC no longer matches
    with pytest.raises(UpstreamError) as info:
        list(eventstream.anthropic_sse([bytes(frame)], "bedrock"))
    assert info.value.failure == "bad-response"
    not_base64 = fake_stream.event(b'{"bytes": "%%%"}')
    with pytest.raises(UpstreamError):
        list(eventstream.anthropic_sse([not_base64], "bedrock"))


def test_body_rewriting_for_bedrock_and_vertex():
    caller = orjson.dumps({"model": "claude-bedrock", "max_tokens": 64, "stream": True, "system": "s",
                           "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": "u1"}})
    bedrock = orjson.loads(rewrite_body(caller, "bedrock-2023-05-31", drop=("model", "stream"),
                                        extra={"anthropic_beta": ["a-1"]}))
    assert bedrock == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "system": "s",
                       "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": "u1"},
                       "anthropic_beta": ["a-1"]}
    vertex = orjson.loads(rewrite_body(caller, "vertex-2023-10-16", drop=("model",)))
    assert vertex["anthropic_version"] == "vertex-2023-10-16" and vertex["stream"] is True and "model" not in vertex
    with pytest.raises(InvalidRequest, match="must be a JSON object"):  # the same 400s as at ingress
        rewrite_body(b'[{"model": "m"}]', "v", drop=("model",))
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        rewrite_body(b'{"model": "m", "max_tokens": 1%s}' % (b"0" * 400), "v", drop=("model",))  # no double holds it


def test_bedrock_prepare_signs_what_the_fake_verifies(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit/secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    adapter = BedrockAdapter(bedrock_provider())
    target = Target(adapter.provider, "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.x:0")
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01", "anthropic-beta": "b1,b2",
               "x-request-id": "req-1"}
    url, body = adapter.prepare(target, b'{"model":"x","max_tokens":5,"messages":[]}', headers, stream=True)
    assert url == ("https://bedrock-runtime.us-west-2.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A"
                   "123456789012%3Ainference-profile%2Fus.anthropic.x%3A0/invoke-with-response-stream")
    assert "anthropic-version" not in headers and orjson.loads(body)["anthropic_beta"] == ["b1", "b2"]
    assert headers["accept"] == "application/vnd.amazon.eventstream"
    accounts = fake_bedrock.AwsAccounts(region="us-west-2")
    accounts.add("AKIAUNITTEST", "unit/secret")
    received = {k.lower(): v for k, v in headers.items()} | {"host": "bedrock-runtime.us-west-2.amazonaws.com"}
    path = url.split(".com", 1)[1]
    verify_url = "https://bedrock-runtime.us-west-2.amazonaws.com" + path
    assert fake_bedrock.verify_signature(accounts, "POST", verify_url, received, body) == "AKIAUNITTEST"
    with pytest.raises(emulator_module.wire.ApiError) as info:  # one byte of the body changed
        fake_bedrock.verify_signature(accounts, "POST", verify_url, received, body.replace(b"5", b"6"))
    assert info.value.etype == "InvalidSignatureException"
    assert adapter.secrets() == ("unit/secret",)


@pytest.mark.parametrize("status,kind,expected,verdict", [
    (429, "ThrottlingException", UpstreamRejected, "rate_limited"),
    (400, "ServiceQuotaExceededException", UpstreamRejected, "rate_limited"),
    (429, "ModelNotReadyException", UpstreamError, "http_5xx"),
    (408, "ModelTimeoutException", UpstreamTimeout, "timeout"),
    (424, "ModelErrorException", UpstreamError, "http_5xx"),
    (403, "AccessDeniedException", UpstreamError, "auth"),
    (403, "UnrecognizedClientException", UpstreamError, "auth"),
])
def test_bedrock_errors_map_to_the_vendors_kinds(status, kind, expected, verdict):
    adapter = BedrockAdapter(bedrock_provider())
    raw = orjson.dumps({"message": f"{kind} happened"})
    header = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    err = adapter.status_error(Target(adapter.provider, "m"), status, header, raw)
    assert type(err) is expected and classify(err).error_type == verdict
    assert f"{kind} happened" in err.message


def test_bedrock_other_errors_read_as_the_wire_formats():
    adapter = BedrockAdapter(bedrock_provider())
    assert adapter.status_error(Target(adapter.provider, "m"), 400, {"x-amzn-errortype": "ValidationException"},
                                b'{"message":"bad"}') is None
    assert error_type({}, b'{"__type":"com.amazon.coral.service#UnrecognizedClientException"}') \
        == "UnrecognizedClientException"


def test_vertex_url_and_headers():
    provider = Provider("vertex", "anthropic", "", None, None, False, platform="vertex",
                        options={"project": "my-proj", "region": "global"})
    adapter = VertexAdapter(provider)
    assert adapter.url("claude-opus-4-1@20250805", stream=False) == (
        "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/anthropic/models/"
        "claude-opus-4-1@20250805:rawPredict")
    regional = VertexAdapter(Provider("v", "anthropic", "", None, None, False, platform="vertex",
                                      options={"project": "p", "region": "europe-west1"}))
    assert regional.url("m", stream=True).startswith("https://europe-west1-aiplatform.googleapis.com/v1/projects/p/"
                                                     "locations/europe-west1/")


def test_vertex_credentials_that_cannot_load_are_an_auth_failure(tmp_path):
    provider = Provider("vertex", "anthropic", "", None, None, False, platform="vertex",
                        options={"project": "p", "region": "us-east5",
                                 "credentials_file": str(tmp_path / "missing.json")})
    with pytest.raises(UpstreamError) as info:
        VertexAdapter(provider).token()
    assert info.value.code == "upstream_auth_failed" and classify(info.value).may_fall_back


def write_models(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return {"MODELS_FILE": str(path)}


def test_config_reads_cloud_providers(tmp_path):
    env = write_models(tmp_path, """
providers:
  aws: {type: bedrock, region: eu-central-1, profile: prod}
  gcp: {type: vertex, project: p1, region: us-east5, credentials_file: /secrets/sa.json}
models:
  c: {provider: aws, model: anthropic.claude-3-5-haiku-20241022-v1:0}
""")
    router = Router.from_settings(Settings.from_env(env), env)
    aws, gcp = router.providers["aws"], router.providers["gcp"]
    assert (aws.type, aws.platform, dict(aws.options)) == ("anthropic", "bedrock",
                                                           {"region": "eu-central-1", "profile": "prod"})
    assert (gcp.type, gcp.platform, gcp.options["project"]) == ("anthropic", "vertex", "p1")
    assert router.resolve("c")[0].provider is aws and aws.available


@pytest.mark.parametrize("spec,message", [
    ("{type: bedrock}", "providers.x.region is required for type bedrock"),
    ("{type: vertex, region: us-east5}", "providers.x.project is required for type vertex"),
    ("{type: bedrock, region: r, api_key_env: K}", "api_key_env not known for type bedrock"),
    ("{type: vertex, project: p, region: 5}", "providers.x.region must be a non-empty string"),
    ("{type: bedrock, region: r, base_url: ftp://x}", "base_url must be an http(s) URL"),
    ("{type: gemini}", "type must be openai, anthropic, azure, bedrock or vertex"),
])
def test_config_errors_for_cloud_providers(tmp_path, spec, message):
    env = write_models(tmp_path, f"providers:\n  x: {spec}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        Router.from_settings(Settings.from_env(env), env)


def test_a_held_vertex_token_is_redacted_from_provider_errors():
    from google.oauth2.credentials import Credentials

    from app.providers.platforms import adapter_for
    from app.providers.upstream import redact

    provider = Provider("vertex-redact", "anthropic", "", None, None, False, platform="vertex",
                        options={"project": "p", "region": "us-east5"})
    adapter = adapter_for(provider)
    assert isinstance(adapter, VertexAdapter) and adapter_for(provider) is adapter  # one per provider
    adapter._credentials = Credentials(token="ya29.unit-test-token-0123456789")
    assert redact("Vertex said: token ya29.unit-test-token-0123456789 is bad", Target(provider, "m")) \
        == "Vertex said: token [redacted] is bad"
    adapter.forget_token()
    assert tuple(adapter.secrets()) == ()

"""Claude on AWS Bedrock: ``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream``.

What the real service checks, this fake checks: a SigV4 ``Authorization`` header for a known access key
(and its session token), scoped to this region and the ``bedrock`` service, dated within 5 minutes, whose
signature it recomputes with botocore's own signer over the headers the request says it signed; then the
body: ``anthropic_version: bedrock-2023-05-31``, no ``model`` or ``stream`` key, ``anthropic_beta`` a list
of strings, and the rest as the Anthropic Messages API validates it. Answers are Anthropic's message
JSON, or for a stream ``chunk`` events in event-stream framing, each carrying one Anthropic event in
base64 ``bytes``. Errors are Bedrock's: ``{"message": ...}`` with ``x-amzn-ErrorType``.

Faults: ``status`` answers Bedrock's exception for that status (``headers`` may name another, e.g.
``{"x-amzn-ErrorType": "ModelNotReadyException"}``); in streams ``error_after`` sends an exception
message (the exception type in ``body``, default ``modelStreamErrorException``), ``cut_after`` cuts.

References: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithResponseStream.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import anthropic, eventstream
from .wire import ApiError, dumps, loads, new_id

PATH = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream)$")
VERSION = "bedrock-2023-05-31"
MAX_SKEW = 300  # seconds: AWS refuses a signature dated further from its clock
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request,\s*"
                   r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$")

EXCEPTIONS = {  # status -> Bedrock's exception for it
    400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
    408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 503: "ServiceUnavailableException",
}
MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. Please retry.",
    "ModelErrorException": "The model produced an invalid sequence as part of ToolUse.",
    "ModelTimeoutException": "Model has timed out in processing the request.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error.",
}


@dataclass
class AwsAccounts:
    """The access keys the fake knows (id -> secret, session token) and the region it serves."""

    region: str = "us-east-1"
    keys: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def add(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.keys[access_key] = (secret_key, token)


def error(kind: str, status: int, message: str) -> ApiError:
    return ApiError(message, status, kind)


def render(err: ApiError) -> tuple[int, list[tuple[str, str]], bytes]:
    kind = err.etype or EXCEPTIONS.get(err.status, "InternalServerException")
    return err.status, [("x-amzn-ErrorType", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")], \
        dumps({"message": err.message})


def verify_signature(accounts: AwsAccounts, method: str, url: str, headers: dict[str, str], body: bytes,
                     now: float | None = None) -> str:
    """The access key of a correctly signed request; Bedrock's 403 otherwise (the checks AWS makes)."""
    auth = headers.get("authorization")
    if not auth:
        raise error("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    match = _AUTH.match(auth)
    if match is None:
        raise error("IncompleteSignatureException", 403, "Authorization header requires 'Credential', "
                    "'Signature' and 'SignedHeaders' parameters.")
    key_id, day, region, service, signed, signature = match.groups()
    if key_id not in accounts.keys:
        raise error("UnrecognizedClientException", 403, "The security token included in the request is invalid.")
    secret, token = accounts.keys[key_id]
    if token is not None and headers.get("x-amz-security-token") != token:
        raise error("UnrecognizedClientException", 403, "The security token included in the request is invalid.")
    if service != "bedrock" or region != accounts.region:
        raise error("InvalidSignatureException", 403, f"Credential should be scoped to a valid region and "
                    f"service ('{accounts.region}', 'bedrock'), not ('{region}', '{service}').")
    names = signed.split(";")
    missing = [n for n in ("host", "x-amz-date") if n not in names] + [n for n in names if n not in headers]
    if missing:
        raise error("InvalidSignatureException", 403, f"Signed header(s) missing: {', '.join(missing)}")
    stamp = headers["x-amz-date"]
    try:
        when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise error("IncompleteSignatureException", 403, f"Invalid X-Amz-Date: {stamp}") from None
    if abs((time.time() if now is None else now) - when) > MAX_SKEW or stamp[:8] != day:
        raise error("InvalidSignatureException", 403, f"Signature expired: {stamp} is now earlier or later "
                    "than 5 minutes from the server's time.")
    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in names})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret, token), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise error("InvalidSignatureException", 403, "The request signature we calculated does not match the "
                    "signature you provided. Check your AWS Secret Access Key and signing method.")
    return key_id


def check_body(body: Any, model: str) -> dict[str, Any]:
    """Bedrock's own rules, then the Messages API's, on the body with the path's model put back."""
    if not isinstance(body, dict):
        raise error("ValidationException", 400, "Malformed input request, please reformat your input and try again.")
    for key in ("model", "stream"):
        if key in body:
            raise error("ValidationException", 400, f"Malformed input request: #: extraneous key [{key}] is not "
                        "permitted, please reformat your input and try again.")
    if body.get("anthropic_version") != VERSION:
        raise error("ValidationException", 400, f"Malformed input request: #/anthropic_version: expected "
                    f"'{VERSION}', got {body.get('anthropic_version')!r}")
    betas = body.get("anthropic_beta")
    if betas is not None and not (isinstance(betas, list) and all(isinstance(b, str) for b in betas)):
        raise error("ValidationException", 400, "Malformed input request: #/anthropic_beta: expected a list of "
                    "strings")
    messages_body = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    messages_body["model"] = model
    try:
        anthropic.validate(messages_body)
    except ApiError as err:
        raise error("ValidationException", 400, err.message) from None
    return messages_body


def chunk(event: bytes) -> bytes:
    """An Anthropic SSE event (``event: ...`` / ``data: {...}``) as Bedrock's ``chunk`` frame."""
    data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
    parsed = loads(data)
    if parsed.get("type") == "message_stop":
        parsed["amazon-bedrock-invocationMetrics"] = {"inputTokenCount": 0, "outputTokenCount": 0,
                                                      "invocationLatency": 1, "firstByteLatency": 1}
        data = dumps(parsed)
    payload = {"bytes": base64.b64encode(data).decode(), "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: len(data) % 32]}
    return eventstream.event(dumps(payload))


@dataclass
class Reply:
    status: int
    ctype: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    frames: list[bytes] | None = None  # a stream's messages, sent one per HTTP chunk


def handle(accounts: AwsAccounts, method: str, raw_path: str, headers: dict[str, str], raw: bytes,
           fault: Any) -> Reply:
    """One InvokeModel call, as Bedrock answers it (raises ``ApiError`` for Bedrock's errors)."""
    path = raw_path.split("?", 1)[0]
    match = PATH.match(path)
    if match is None or method != "POST":
        raise error("UnknownOperationException", 404, f"Unknown operation {method} {path}")
    verify_signature(accounts, method, f"http://{headers.get('host', '')}{raw_path}", headers, raw)
    model, action = unquote(match.group(1)), match.group(2)
    if fault is not None and fault.status is not None:
        named = (fault.headers or {}).get("x-amzn-ErrorType")
        kind = named.split(":")[0] if named else EXCEPTIONS.get(int(fault.status), "InternalServerException")
        raise error(kind, int(fault.status), fault.message or MESSAGES.get(kind, "Error"))
    try:
        body = loads(raw) if raw else None
    except ValueError:
        body = None
    messages_body = check_body(body, model)
    request_id = [("x-amzn-RequestId", new_id("", 32))]
    if action == "invoke":
        return Reply(200, "application/json", request_id, dumps(anthropic.messages(messages_body, False)))
    events = anthropic.messages(messages_body, True)
    assert isinstance(events, list)
    frames = [chunk(e) for e in events]
    if fault is not None and fault.error_after is not None:
        kind = str(fault.body or "modelStreamErrorException")
        message = fault.message or "An error occurred while streaming the response. Retry your request."
        frames = [*frames[: fault.error_after], eventstream.exception(kind, dumps({"message": message}))]
    return Reply(200, "application/vnd.amazon.eventstream",
                 [*request_id, ("x-amzn-bedrock-content-type", "application/json")], frames=frames)

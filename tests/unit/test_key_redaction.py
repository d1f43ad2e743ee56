"""A provider's error that quotes the gateway's key, in any case or base64-encoded, never passes it on."""

from __future__ import annotations

import base64

import pytest

from app.errors import UpstreamError
from app.providers.routing import Provider, Target
from app.providers.upstream import without_key

# Not key-like to the generic masks (no "sk-" prefix): only without_key can catch it.
KEY = "prov1derSecretValue0123456789abcdef"
TARGET = Target(Provider("local", "openai", "http://x", KEY, "LOCAL_API_KEY", True), "m")


def _b64(data: str, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data.encode()).decode()


@pytest.mark.parametrize("quoted", [
    KEY, KEY.upper(), KEY.lower(), KEY.swapcase(),
    _b64(KEY), _b64("user:" + KEY), _b64("Bearer " + KEY), _b64("ab" + KEY + "?"), _b64("a" + KEY, urlsafe=True),
])
def test_the_key_is_redacted_in_any_case_and_in_base64(quoted):
    err = without_key(UpstreamError(f"Provider local: bad credentials {quoted} (check them)"), TARGET)
    assert "[redacted]" in err.message and str(err) == err.message
    for form in (KEY, KEY.lower(), _b64(KEY)[:-4]):
        assert form.lower() not in err.message.lower()


def test_other_text_is_left_alone():
    err = without_key(UpstreamError("Provider local: model overloaded"), TARGET)
    assert err.message == "Provider local: model overloaded"


def test_another_providers_key_quoted_back_is_redacted_too(monkeypatch):
    """A provider may echo any text it was given (a fallback's request, a shared proxy): every provider key the
    gateway holds is masked in every provider's errors, not only the target's own."""
    from app.providers import upstream

    other = "an0therProviderSecret9876543210fedcba"
    monkeypatch.setattr(upstream, "_KEYS", set())
    upstream.register_keys([other, None, ""])
    err = without_key(UpstreamError(f"Provider local: bad key {other} and {KEY.upper()} here"), TARGET)
    assert other not in err.message and KEY.upper() not in err.message
    assert err.message.count("[redacted]") == 2

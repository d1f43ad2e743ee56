"""The rate limit and clients files: the seed's format, the extensions, every bad value, reloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from app.config.settings import ConfigError, Settings
from app.limits import config as access_config
from app.limits.clients import ANONYMOUS, key_digest, parse_clients, presented_key
from app.limits.policy import Rate, TokenRate, parse_policy

ROOT = Path(__file__).resolve().parents[2]
SEED = {"rate_limiting": {"global": {"requests_per_second": 10000},
                          "per_client": {"tier_free": 10, "tier_pro": 100, "tier_enterprise": 1000}}}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_the_shipped_files_load_open_with_the_seed_limits():
    cfg = access_config.load_access_config(Settings.from_env({}))
    assert cfg.clients.open and cfg.clients.anonymous.id == ANONYMOUS
    assert cfg.clients.anonymous.tier == "enterprise", "development mode: the most generous tier"
    chosen = access_config.load_access_config(Settings.from_env({"ANONYMOUS_TIER": "free"}))
    assert chosen.clients.anonymous.tier == "free"
    assert cfg.policy.global_requests == Rate(10000, 10000)
    assert {n: t.requests.per_second for n, t in cfg.policy.tiers.items()} == {
        "free": 10, "pro": 100, "enterprise": 1000}


def test_seed_format_means_requests_per_second_with_one_second_of_burst():
    policy = parse_policy(SEED)
    free = policy.tier("free")
    assert free.requests == Rate(10, 10) and free.tokens is None
    assert free.requests.interval == pytest.approx(0.1) and free.requests.period == pytest.approx(1.0)


def test_extended_tier_adds_burst_and_tokens_per_minute():
    policy = parse_policy({"rate_limiting": {"per_client": {
        "tier_pro": {"requests_per_second": 2.5, "burst": 10, "tokens_per_minute": 60000},
        "slow": 0.5}}})
    pro, slow = policy.tier("pro"), policy.tier("slow")
    assert pro.requests == Rate(2.5, 10) and pro.tokens == TokenRate(60000)
    assert pro.tokens.interval == pytest.approx(0.001)
    assert slow.requests == Rate(0.5, 1.0), "below 1/s a client may still send one request"
    assert policy.global_requests is None


def test_shares_split_each_limit_for_local_counting():
    assert Rate(10, 10).share(4) == Rate(2.5, 2.5)
    assert Rate(1, 1).share(4) == Rate(0.25, 1.0)
    assert TokenRate(1000).share(3) == TokenRate(333)
    assert Rate(5, 5).share(1) == Rate(5, 5)


@pytest.mark.parametrize("data,fragment", [
    ({}, "'rate_limiting' mapping"),
    ({"rate_limiting": {"per_client": {}}}, "per_client must map"),
    ({"rate_limiting": {"per_client": {"tier_free": 0}}}, "tier_free must be a positive number"),
    ({"rate_limiting": {"per_client": {"tier_free": "ten"}}}, "tier_free must be a positive number"),
    ({"rate_limiting": {"per_client": {"tier_free": True}}}, "tier_free must be a positive number"),
    ({"rate_limiting": {"per_client": {"tier_free": {"burst": 3}}}}, "requests_per_second is missing"),
    ({"rate_limiting": {"per_client": {"tier_free": {"requests_per_second": 1, "burst": 1.5}}}},
     "burst must be a positive integer"),
    ({"rate_limiting": {"per_client": {"tier_free": {"requests_per_second": 1, "tokens_per_minute": -5}}}},
     "tokens_per_minute must be a positive integer"),
    ({"rate_limiting": {"per_client": {"tier_free": {"requests_per_second": 1, "rpm": 5}}}}, "unknown field 'rpm'"),
    ({"rate_limiting": {"per_client": {"tier_free": 1, "free": 2}}}, "repeats tier 'free'"),
    ({"rate_limiting": {"global": 5, "per_client": {"tier_free": 1}}}, "global must be a mapping"),
    ({"rate_limiting": {"globl": {}, "per_client": {"tier_free": 1}}}, "unknown field 'globl'"),
])
def test_a_bad_rate_limit_file_names_the_field(data, fragment):
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    assert fragment in str(info.value) and str(info.value).startswith("RATE_LIMITS_FILE")
    assert "\n" not in str(info.value)


def test_clients_are_found_by_key_and_never_by_digest_or_prefix():
    reg = parse_clients({"clients": [
        {"id": "acme", "tier": "pro", "key_sha256": digest("acme-key")},
        {"id": "beta", "tier": "free", "key_sha256": digest("beta-key").upper(), "budget_cents_per_day": 50}]},
        ["free", "pro"], "free")
    assert not reg.open
    assert reg.find("acme-key").id == "acme" and reg.find("acme-key").tier == "pro"
    assert reg.find("beta-key").budgets == {"day": 50.0}
    assert reg.find("acme-ke") is None and reg.find("") is None
    assert reg.find(digest("acme-key")) is None, "the stored digest is not a key"
    assert key_digest("acme-key").hex() == digest("acme-key")


def test_a_valid_key_is_remembered_and_an_invalid_one_never(monkeypatch):
    """A key found valid skips the digest next time; wrong keys are digested every time and never kept."""
    from app.limits import clients as clients_module

    reg = parse_clients({"clients": [{"id": "acme", "tier": "pro", "key_sha256": digest("acme-key")}]},
                        ["pro"], "pro")
    digested: list[str] = []
    real = clients_module.key_digest
    monkeypatch.setattr(clients_module, "key_digest", lambda key: digested.append(key) or real(key))
    assert [reg.find("acme-key").id for _ in range(3)] == ["acme"] * 3
    assert [reg.find(f"wrong-{i}") for i in range(3)] == [None] * 3 and reg.find("wrong-0") is None
    assert digested == ["acme-key", "wrong-0", "wrong-1", "wrong-2", "wrong-0"]
    assert len(reg._found) == 1


def test_the_remembered_keys_stay_bounded_for_texts_of_one_key():
    """Texts that encode to a key's bytes (surrogate escapes) all find its client; only a few are kept."""
    import itertools

    key = "éèê"
    reg = parse_clients({"clients": [{"id": "acme", "tier": "pro",
                                      "key_sha256": hashlib.sha256(key.encode()).hexdigest()}]}, ["pro"], "pro")
    spellings = ["".join(p) for p in itertools.product(
        *[(c, "".join(chr(0xDC00 + b) for b in c.encode())) for c in key])]  # "é" or its two escaped bytes
    assert len(set(spellings)) == 8
    assert all(reg.find(text).id == "acme" for text in spellings)
    assert len(reg._found) == 4  # four per client at most


@pytest.mark.parametrize("entry,fragment", [
    ("acme", "must be a mapping"),
    ({"tier": "pro", "key_sha256": "0" * 64}, ".id must be"),
    ({"id": "a b", "tier": "pro", "key_sha256": "0" * 64}, ".id must be"),
    ({"id": "acme", "tier": "gold", "key_sha256": "0" * 64}, "tier 'gold' is not in RATE_LIMITS_FILE"),
    ({"id": "acme", "tier": "pro", "key_sha256": "sk-plain-key"}, "key_sha256 must be 64 hex digits"),
    ({"id": "acme", "tier": "pro", "key": "sk-plain-key"}, "unknown field 'key'"),
    ({"id": "acme", "tier": "pro", "key_sha256": "0" * 64, "budget_cents_per_day": 0}, "budget_cents_per_day"),
])
def test_a_bad_client_entry_names_it(entry, fragment):
    with pytest.raises(ConfigError) as info:
        parse_clients({"clients": [entry]}, ["free", "pro"], "free")
    assert fragment in str(info.value) and str(info.value).startswith("CLIENTS_FILE")


def test_duplicate_ids_and_shared_keys_are_refused():
    one = {"id": "a", "tier": "free", "key_sha256": digest("k1")}
    with pytest.raises(ConfigError, match="'a' appears twice"):
        parse_clients({"clients": [one, {**one, "key_sha256": digest("k2")}]}, ["free"], "free")
    with pytest.raises(ConfigError, match="same key as another"):
        parse_clients({"clients": [one, {**one, "id": "b"}]}, ["free"], "free")


def test_anonymous_tier_must_exist_only_when_the_gateway_is_open():
    with pytest.raises(ConfigError, match="ANONYMOUS_TIER: tier 'gold'"):
        parse_clients({"clients": []}, ["free"], "gold")
    reg = parse_clients({"clients": [{"id": "a", "tier": "free", "key_sha256": digest("k")}]}, ["free"], "gold")
    assert not reg.open


@pytest.mark.parametrize("authorization,x_api_key,expected", [
    ("Bearer abc", None, "abc"),
    ("bearer   abc  ", None, "abc"),
    (None, "xyz", "xyz"),
    ("Bearer abc", "xyz", "abc"),
    ("Basic dXNlcjpwYXNz", "xyz", "xyz"),
    ("Bearer ", None, None),
    (None, "  ", None),
    (None, None, None),
])
def test_the_presented_key_comes_from_bearer_or_x_api_key(authorization, x_api_key, expected):
    assert presented_key(authorization, x_api_key) == expected


def _settings(tmp_path: Path, clients: object, limits: object = SEED) -> Settings:
    (tmp_path / "clients.yaml").write_text(yaml.safe_dump(clients))
    (tmp_path / "limits.yaml").write_text(yaml.safe_dump(limits))
    return Settings.from_env({"CLIENTS_FILE": str(tmp_path / "clients.yaml"),
                              "RATE_LIMITS_FILE": str(tmp_path / "limits.yaml")})


def test_a_missing_file_stops_start_up_rather_than_opening_the_gateway(tmp_path):
    settings = Settings.from_env({"CLIENTS_FILE": str(tmp_path / "nope.yaml")})
    with pytest.raises(ConfigError, match=r"CLIENTS_FILE: .* does not exist"):
        access_config.load_access_config(settings)
    settings = Settings.from_env({"RATE_LIMITS_FILE": str(tmp_path / "nope.yaml")})
    with pytest.raises(ConfigError, match=r"RATE_LIMITS_FILE: .* does not exist"):
        access_config.load_access_config(settings)


def test_the_open_gateway_is_the_one_thing_the_master_warns_about(tmp_path):
    closed = access_config.load_access_config(_settings(tmp_path, {"clients": [
        {"id": "a", "tier": "free", "key_sha256": digest("k")}]}))
    assert access_config.startup_warnings(closed) == []
    opened = access_config.load_access_config(_settings(tmp_path, {"clients": []}))
    (warning,) = access_config.startup_warnings(opened)
    assert warning.startswith("no clients in CLIENTS_FILE: the gateway is OPEN") and "'enterprise'" in warning


def test_a_bad_clients_list_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'clients' must be a list"):
        access_config.load_access_config(_settings(tmp_path, {"clients": "everyone"}))


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_rate_limit_replicas_must_be_a_positive_count(value):
    with pytest.raises(ConfigError, match="RATE_LIMIT_REPLICAS must be an integer from 1"):
        Settings.from_env({"RATE_LIMIT_REPLICAS": value})
    assert Settings.from_env({"RATE_LIMIT_REPLICAS": "3"}).rate_limit_replicas == 3

"""A model spread over deployments: parsing, the three strategies, cooldowns, and Azure's URL and auth.

The strategies are checked on the balancer with a seeded random source and a hand-moved clock; what a
real request does with them (retries moving to the next deployment, breakers per deployment) is in
tests/integration/test_azure_deployments.py and tests/e2e/test_deployments_live.py.
"""

from __future__ import annotations

import collections
import random

import pytest

from app.config.settings import STRATEGIES, ConfigError, Settings
from app.errors import CONNECT_FAILURE, DEADLINE, UpstreamError, UpstreamRejected, UpstreamTimeout
from app.providers import azure
from app.providers.balancer import Balancer
from app.providers.routing import Router
from tests.support.clock import Clock

MODELS = """
providers:
  azure-east:
    type: azure
    base_url: https://east.openai.azure.com/
    api_key_env: AZURE_EAST_KEY
  azure-west:
    type: azure
    base_url: https://west.openai.azure.com
    api_key_env: AZURE_WEST_KEY
    endpoint: v1
models:
  gpt-4o:
    strategy: {strategy}
    deployments:
      - provider: azure-east
        model: gpt4o-a
        weight: 1
      - provider: azure-east
        model: gpt4o-a
        name: east-second-key
        api_key_env: AZURE_EAST_KEY_2
        weight: 1
      - provider: azure-west
        model: gpt4o-b
        weight: 2
    fallbacks: [claude-sonnet-4-20250514]
"""
ENV = {"AZURE_EAST_KEY": "east-key-1", "AZURE_EAST_KEY_2": "east-key-2", "AZURE_WEST_KEY": "west-key",
       "ANTHROPIC_API_KEY": "ak"}


def make_router(tmp_path, strategy: str = "weighted", text: str = MODELS, env: dict | None = None) -> Router:
    path = tmp_path / "models.yaml"
    path.write_text(text.replace("{strategy}", strategy))
    environ = {"MODELS_FILE": str(path), **(ENV if env is None else env)}
    return Router.from_settings(Settings.from_env(environ), environ)


def test_deployments_resolve_side_by_side_then_the_fallback(tmp_path):
    router = make_router(tmp_path)
    targets = router.resolve("gpt-4o")
    assert [(t.deployment, t.provider.name, t.model, t.group) for t in targets] == [
        ("azure-east/gpt4o-a", "azure-east", "gpt4o-a", "gpt-4o"),
        ("east-second-key", "azure-east", "gpt4o-a", "gpt-4o"),
        ("azure-west/gpt4o-b", "azure-west", "gpt4o-b", "gpt-4o"),
        (None, "anthropic", "claude-sonnet-4-20250514", None)]
    # Several keys for one provider are several deployments; each sends its own key.
    assert [t.provider.api_key for t in targets[:3]] == ["east-key-1", "east-key-2", "west-key"]
    assert all(t.provider.type == "openai" and t.provider.platform == "azure" for t in targets[:3])
    assert set(router.keys()) >= {"east-key-1", "east-key-2", "west-key", "ak"}


def test_a_deployment_key_may_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-a-file\n")
    env = {**ENV, "AZURE_EAST_KEY_2_FILE": str(secret)}
    del env["AZURE_EAST_KEY_2"]
    targets = make_router(tmp_path, env=env).resolve("gpt-4o")
    assert targets[1].provider.api_key == "from-a-file"


def test_deployments_without_their_key_are_not_routed(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "AZURE_WEST_KEY"}
    targets = make_router(tmp_path, env=env).resolve("gpt-4o")
    assert "azure-west/gpt4o-b" not in [t.deployment for t in targets]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_is_taken_both_as_deployment_strategy_and_in_the_models_file(tmp_path, strategy):
    """One declaration: what DEPLOYMENT_STRATEGY takes, a model's ``strategy`` takes too."""
    assert Settings.from_env({"DEPLOYMENT_STRATEGY": strategy}).deployment_strategy == strategy
    assert make_router(tmp_path, strategy).resolve("gpt-4o")


def test_an_unknown_strategy_is_refused_by_both(tmp_path):
    with pytest.raises(ConfigError, match="DEPLOYMENT_STRATEGY"):
        Settings.from_env({"DEPLOYMENT_STRATEGY": "fastest"})
    with pytest.raises(ConfigError, match="strategy must be one of weighted, least-busy, latency"):
        make_router(tmp_path, "fastest")


@pytest.mark.parametrize("bad,message", [
    ("strategy: fastest\ndeployments: [{provider: openai}]", "strategy must be one of"),
    ("deployments: []", "deployments must be a non-empty list"),
    ("deployments: [{provider: nowhere}]", "is not a known provider"),
    ("deployments: [{provider: openai, weight: 0}]", "weight must be a number above 0"),
    ("deployments: [{provider: openai, zone: x}]", "unknown field 'zone'"),
    ("deployments: [{provider: openai}, {provider: openai}]", "already used by another deployment"),
    ("{provider: openai, deployments: [{provider: openai}]}", "not both"),
])
def test_bad_deployments_are_config_errors(tmp_path, bad, message):
    text = "models:\n  m:\n    " + bad.replace("\n", "\n    ") + "\n"
    if bad.startswith("{"):
        text = "models:\n  m: " + bad + "\n"
    with pytest.raises(ConfigError, match=message):
        make_router(tmp_path, text=text, env={"OPENAI_API_KEY": "k"})


@pytest.mark.parametrize("spec,message", [
    ("endpoint: v2", "endpoint must be deployments or v1"),
    ("api_version: ''", "api_version must be a version string"),
    ("token_file: /t\n    api_key_env: K", "either api_key_env or token_file"),
])
def test_bad_azure_providers_are_config_errors(tmp_path, spec, message):
    text = f"providers:\n  az:\n    type: azure\n    base_url: https://x.openai.azure.com\n    {spec}\n"
    with pytest.raises(ConfigError, match=message):
        make_router(tmp_path, text=text, env={})


# ---- Azure's URL and auth (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference)

def test_azure_urls_for_both_endpoints(tmp_path):
    targets = make_router(tmp_path).resolve("gpt-4o")
    assert azure.url(targets[0], "2024-10-21") == (
        "https://east.openai.azure.com/openai/deployments/gpt4o-a/chat/completions?api-version=2024-10-21")
    assert azure.url(targets[2], "2024-10-21") == "https://west.openai.azure.com/openai/v1/chat/completions"


def test_azure_auth_is_the_api_key_header_not_a_bearer(tmp_path):
    target = make_router(tmp_path).resolve("gpt-4o")[1]
    headers = {"authorization": "Bearer east-key-2", "content-type": "application/json"}
    azure.authorize(target.provider, headers)
    assert headers == {"api-key": "east-key-2", "content-type": "application/json"}


def test_an_entra_token_file_is_reread_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(azure.TOKENS, "recheck", 0.0)  # look at the file on every request
    token = tmp_path / "token"
    token.write_text("token-one\n")
    text = (f"providers:\n  az:\n    type: azure\n    base_url: https://x.openai.azure.com\n"
            f"    token_file: {token}\nmodels:\n  g:\n    provider: az\n")
    target = make_router(tmp_path, text=text, env={}).resolve("g")[0]  # routable without a key
    headers: dict[str, str] = {}
    azure.authorize(target.provider, headers)
    assert headers == {"authorization": "Bearer token-one"}
    token.write_text("token-two-longer\n")
    azure.authorize(target.provider, headers)
    assert headers == {"authorization": "Bearer token-two-longer"}
    from app.providers.upstream import redact
    assert redact("echo token-two-longer", target) == "echo [redacted]"  # a token read is a secret
    token.unlink()
    with pytest.raises(UpstreamError, match="cannot be read") as info:
        azure.authorize(target.provider, headers)
    assert info.value.code == "upstream_auth_failed"


@pytest.mark.parametrize("status,raw,filtered", [
    (400, b'{"error":{"code":"content_filter","message":"filtered","innererror":{}}}', True),
    (400, b'{"error":{"code":"invalid","message":"content_filter mentioned"}}', False),
    (429, b'{"error":{"code":"content_filter"}}', False),
    (400, b"content_filter but not JSON", False),
])
def test_filtered_prompt_reads_azures_error_code(status, raw, filtered):
    assert azure.filtered_prompt(status, raw) is filtered


# ---- strategies

def picks(balancer: Balancer, targets, n: int) -> collections.Counter:
    return collections.Counter(balancer.order(targets)[0].deployment for _ in range(n))


def test_weighted_picks_follow_the_weights_over_10000(tmp_path):
    router = make_router(tmp_path)
    targets = router.resolve("gpt-4o")
    balancer = Balancer(router.groups(), rng=random.Random(7))
    counts = picks(balancer, targets, 10_000)
    shares = {name: counts[name] / 10_000 for name in counts}
    assert shares["azure-east/gpt4o-a"] == pytest.approx(0.25, abs=0.02)
    assert shares["east-second-key"] == pytest.approx(0.25, abs=0.02)
    assert shares["azure-west/gpt4o-b"] == pytest.approx(0.50, abs=0.02)
    # Every order still holds every deployment, then the fallback last.
    order = balancer.order(targets)
    assert {t.deployment for t in order[:3]} == {t.deployment for t in targets[:3]}
    assert order[3] is targets[3]


def test_a_deployment_cooled_down_by_a_429_is_skipped_for_its_retry_after(tmp_path):
    router = make_router(tmp_path)
    targets = router.resolve("gpt-4o")
    clock = Clock()
    balancer = Balancer(router.groups(), cooldown=10.0, clock=clock, rng=random.Random(1))
    west = targets[2]
    balancer.end(west, balancer.begin(west), UpstreamRejected("slow down", status=429, retry_after=3.0))
    for _ in range(200):
        assert west not in balancer.order(targets)
    assert balancer.retry_after([west]) == pytest.approx(3.0)
    assert balancer.health().status == "degraded"
    assert balancer.health().detail["models"]["gpt-4o"]["deployments"]["azure-west/gpt4o-b"]["state"] == "cooling"
    clock.now += 3.0
    assert west in balancer.order(targets)
    assert balancer.health().status == "ok"


@pytest.mark.parametrize("err,cools_for", [
    (UpstreamError("boom", upstream_status=503), 10.0),
    (UpstreamError("boom", upstream_status=503, retry_after=2.0), 2.0),
    (UpstreamError("refused", failure=CONNECT_FAILURE), 10.0),
    (UpstreamError("bad key", code="upstream_auth_failed"), 10.0),
    (UpstreamTimeout("request deadline", failure=DEADLINE), None),  # the request's time, not the deployment's
    (UpstreamRejected("bad field", status=400), None),  # the caller's 400 says nothing against it
])
def test_which_failures_cool_a_deployment(tmp_path, err, cools_for):
    router = make_router(tmp_path)
    target = router.resolve("gpt-4o")[0]
    clock = Clock()
    balancer = Balancer(router.groups(), cooldown=10.0, clock=clock)
    balancer.end(target, balancer.begin(target), err)
    assert balancer.retry_after([target]) == pytest.approx(cools_for or 0.0)


def test_every_deployment_cooling_leaves_only_the_fallback(tmp_path):
    router = make_router(tmp_path)
    targets = router.resolve("gpt-4o")
    balancer = Balancer(router.groups(), cooldown=5.0, clock=Clock())
    for t in targets[:3]:
        balancer.end(t, balancer.begin(t), UpstreamError("down", upstream_status=500))
    assert balancer.order(targets) == (targets[3],)


def test_least_busy_prefers_the_deployment_with_fewest_in_flight(tmp_path):
    router = make_router(tmp_path, "least-busy")
    targets = router.resolve("gpt-4o")
    balancer = Balancer(router.groups(), rng=random.Random(3))
    for t in (targets[0], targets[0], targets[2]):
        balancer.begin(t)
    assert balancer.order(targets)[0] is targets[1]
    balancer.begin(targets[1])
    assert balancer.order(targets)[0] in (targets[1], targets[2])  # one each in flight: tie by weight


def test_latency_aware_prefers_the_fast_deployment(tmp_path):
    router = make_router(tmp_path, "latency")
    targets = router.resolve("gpt-4o")
    clock = Clock()
    balancer = Balancer(router.groups(), clock=clock, rng=random.Random(5))
    speeds = {targets[0].deployment: 0.30, targets[1].deployment: 0.02, targets[2].deployment: 0.25}
    counts: collections.Counter = collections.Counter()
    for _ in range(2000):
        chosen = balancer.order(targets)[0]
        counts[chosen.deployment] += 1
        started = balancer.begin(chosen)
        clock.now += speeds[chosen.deployment]
        balancer.end(chosen, started, None)
    # Power of two choices over weights 1:1:2: the fast one (weight 1: a quarter of first picks by weight)
    # is in the drawn pair 7/12 of the time and then always wins; the slowest wins no pair at all.
    assert counts[targets[1].deployment] / 2000 == pytest.approx(7 / 12, abs=0.04)
    assert counts[targets[0].deployment] < 0.01 * 2000


def test_peak_ewma_jumps_up_at_once_and_decays_down(tmp_path):
    router = make_router(tmp_path, "latency")
    target = router.resolve("gpt-4o")[0]
    clock = Clock()
    balancer = Balancer(router.groups(), clock=clock)

    def answer(seconds: float) -> float:
        started = balancer.begin(target)
        clock.now += seconds
        balancer.end(target, started, None)
        return balancer.health().detail["models"]["gpt-4o"]["deployments"][target.deployment]["latency_ms"]

    assert answer(0.1) == 100.0
    assert answer(1.0) == 1000.0  # a slow answer counts in full at once
    assert 100.0 < answer(0.1) < 1000.0  # a fast one pulls it down only as time passes


def test_a_token_file_is_looked_at_once_a_second_at_most(tmp_path):
    token = tmp_path / "token"
    token.write_text("first")
    clock = Clock()
    files = azure.TokenFiles(recheck=1.0, clock=clock)
    assert files.read(str(token)) == "first"
    token.write_text("second-token")
    assert files.read(str(token)) == "first"  # within the second: not looked at
    clock.now += 1.0
    assert files.read(str(token)) == "second-token"

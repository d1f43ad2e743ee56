"""Routing: models.yaml entries, provider/model, prefixes, fallbacks, missing keys."""

from __future__ import annotations

import pytest

from app.config.settings import ConfigError, Settings
from app.errors import ModelNotFound, NoHealthyProvider
from app.providers.routing import Router

MODELS = """
providers:
  local:
    type: openai
    base_url: http://127.0.0.1:11434/v1/
models:
  fast:
    provider: anthropic
    model: claude-3-5-haiku-latest
    fallbacks: [gpt-4o-mini]
  llama3:
    provider: local
"""


@pytest.fixture
def router(tmp_path) -> Router:
    path = tmp_path / "models.yaml"
    path.write_text(MODELS)
    env = {"MODELS_FILE": str(path), "OPENAI_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}
    return Router.from_settings(Settings.from_env(env), env)


def test_alias_with_fallbacks(router):
    targets = router.resolve("fast")
    assert [(t.provider.name, t.model) for t in targets] == [("anthropic", "claude-3-5-haiku-latest"),
                                                              ("openai", "gpt-4o-mini")]


@pytest.mark.parametrize("model,provider,upstream", [
    ("gpt-4o", "openai", "gpt-4o"), ("o3-mini", "openai", "o3-mini"), ("chatgpt-4o-latest", "openai", None),
    ("claude-opus-4", "anthropic", None), ("local/qwen2", "local", "qwen2"), ("llama3", "local", "llama3"),
    ("openai/my-finetune", "openai", "my-finetune"), ("text-embedding-3-small", "openai", None),
])
def test_prefix_and_explicit_routing(router, model, provider, upstream):
    target = router.resolve(model)[0]
    assert target.provider.name == provider and target.model == (upstream or model)
    assert not target.provider.base_url.endswith("/")


def test_wire_formats_name_every_target_with_a_key_or_not(router, tmp_path):
    assert router.wire_formats("fast") == {"anthropic", "openai"}
    assert router.wire_formats("claude-3-5-haiku-latest") == {"anthropic"}
    assert router.wire_formats("local/qwen2") == {"openai"}
    with pytest.raises(ModelNotFound):
        router.wire_formats("mistral-large")
    keyless = Router.from_settings(Settings.from_env({"MODELS_FILE": str(tmp_path / "none.yaml")}), {})
    assert keyless.wire_formats("claude-3-5-haiku-latest") == {"anthropic"}  # no key needed to say so


@pytest.mark.parametrize("model", ["llama-3", "mistral-large", "nope/gpt-4o", "local/"])
def test_unknown_models_are_404(router, model):
    with pytest.raises(ModelNotFound) as info:
        router.resolve(model)
    assert info.value.status == 404 and info.value.code == "model_not_found"


def test_a_resolved_name_is_remembered_and_a_failed_one_fails_again(router, monkeypatch):
    first = router.resolve("fast")
    monkeypatch.setattr(router, "_direct", lambda model: pytest.fail("resolved again"))
    assert router.resolve("fast") is first
    monkeypatch.undo()
    for _ in range(2):
        with pytest.raises(ModelNotFound):
            router.resolve("mistral-large")
    assert "mistral-large" not in router._resolved


def test_remembered_names_are_bounded_and_the_rest_still_resolve(router, monkeypatch):
    monkeypatch.setattr("app.providers.routing.MAX_REMEMBERED_MODELS", 3)
    names = [f"gpt-custom-{i}" for i in range(5)]
    assert [router.resolve(name)[0].model for name in names] == names
    assert list(router._resolved) == names[:3]


def test_provider_without_key_is_not_routed(tmp_path):
    env = {"MODELS_FILE": str(tmp_path / "none.yaml"), "OPENAI_API_KEY": "k1"}
    router = Router.from_settings(Settings.from_env(env), env)
    with pytest.raises(NoHealthyProvider, match="ANTHROPIC_API_KEY"):
        router.resolve("claude-3-5-haiku-latest")
    assert router.resolve("gpt-4o")[0].provider.api_key == "k1"


@pytest.mark.parametrize("text,message", [
    ("models:\n  x:\n    provider: nowhere\n", "models.x.provider"),
    ("models:\n  x:\n    provider: openai\n    fallbacks: [unknown-model]\n", "unknown model"),
    ("providers:\n  p:\n    type: grpc\n    base_url: http://x\n", "providers.p.type"),
    ("providers:\n  p:\n    base_url: ftp://x\n", "providers.p.base_url"),
    ("providers:\n  p:\n    type: anthropic\n    base_url: http://x\n    responses: true\n", "providers.p.responses"),
    ("providers:\n  p:\n    base_url: http://x\n    responses: 'yes'\n", "providers.p.responses"),
    ("- just\n- a list\n", "mapping"),
    ("models: [\n", "cannot read"),
])
def test_bad_models_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    env = {"MODELS_FILE": str(path)}
    with pytest.raises(ConfigError, match=message) as info:
        Router.from_settings(Settings.from_env(env), env)
    assert str(info.value).startswith("MODELS_FILE")


def test_an_extra_providers_key_follows_the_file_rule(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("providers:\n  local:\n    base_url: http://x\n    api_key_env: LOCAL_API_KEY\n")
    (tmp_path / "local").write_text("local-key\n")
    env = {"MODELS_FILE": str(path), "LOCAL_API_KEY_FILE": str(tmp_path / "local")}
    assert Router.from_settings(Settings.from_env(env), env).providers["local"].api_key == "local-key"
    env["LOCAL_API_KEY"] = "plain"
    with pytest.raises(ConfigError, match=r"^LOCAL_API_KEY and LOCAL_API_KEY_FILE are both set; set only one$"):
        Router.from_settings(Settings.from_env(env), env)


def test_which_providers_serve_the_responses_api(tmp_path):
    """The built-in openai provider relays /v1/responses; an extra openai-type provider only with
    ``responses: true``; an anthropic-type one never (docs/api.md, "Responses API")."""
    path = tmp_path / "models.yaml"
    path.write_text(MODELS.replace("providers:\n", "providers:\n  proxy:\n    type: openai\n"
                                   "    base_url: https://proxy.test/v1\n    responses: true\n"))
    env = {"MODELS_FILE": str(path), "OPENAI_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}
    providers = Router.from_settings(Settings.from_env(env), env).providers
    assert [name for name, p in providers.items() if p.speaks("responses")] == ["openai", "proxy"]
    assert providers["local"].speaks("openai") and not providers["local"].speaks("responses")
    assert not providers["anthropic"].speaks("responses")

"""Cache settings: parsed and validated, and wired by the factory into the stage they describe."""

from __future__ import annotations

import pytest

from app.config.settings import ConfigError, Settings
from app.factory import make_cache
from app.resilience.redis_guard import RedisGuard, make_redis


def build(env: dict[str, str]):
    return make_cache(Settings.from_env(env), RedisGuard(None))


def test_defaults_give_l1_and_coalescing():
    stage = build({})
    assert stage.tiers.l1.enabled and stage.tiers.l1.max_entries == 1000 and stage.tiers.l1.ttl == 300
    assert stage.tiers.l1.max_bytes == 64 * 1024 * 1024
    assert stage.coalescer is not None and stage.namespace is None


def test_each_setting_reaches_the_stage():
    stage = build({"L1_CACHE_SIZE": "5", "L1_MAX_BYTES": "4096", "L1_TTL_SECONDS": "7", "CACHE_NAMESPACE": "team",
                   "CACHE_COALESCING": "false"})
    assert (stage.tiers.l1.max_entries, stage.tiers.l1.max_bytes, stage.tiers.l1.ttl) == (5, 4096, 7)
    assert stage.namespace == "team" and stage.coalescer is None


def test_l2_is_used_only_when_enabled_and_redis_is_configured():
    assert build({"ENABLE_L2_CACHE": "false"}).tiers.l2 is None
    assert build({"ENABLE_L2_CACHE": "true"}).tiers.l2 is None  # a guard without a client: nothing to use
    settings = Settings.from_env({"ENABLE_L2_CACHE": "true", "L2_TTL_SECONDS": "60"})
    stage = make_cache(settings, RedisGuard(make_redis(settings)))
    assert stage.tiers.l2 is not None and stage.tiers.l2.ttl == 60


@pytest.mark.parametrize("name,value", [("CACHE_COALESCING", "sometimes"), ("L1_CACHE_SIZE", "-1"),
                                        ("L1_MAX_BYTES", "lots"), ("L2_TTL_SECONDS", "1h")])
def test_a_bad_cache_setting_names_its_variable(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(name)

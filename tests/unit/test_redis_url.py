"""Redis URLs: one Redis, a Redis Cluster's seeds, or Sentinels and the primary's name; bad ones refused at start."""

from __future__ import annotations

import pytest

from app.config.redis_url import CLUSTER, SENTINEL, SINGLE, parse_redis_url
from app.config.settings import ConfigError, Settings


def test_plain_urls_are_redis_pys_own():
    for url in ("redis://localhost:6379/2", "rediss://:pw@cache:6380", "unix:///run/redis.sock"):
        address = parse_redis_url(url)
        assert address.topology == SINGLE and address.url == url


def test_cluster_seeds_and_credentials():
    address = parse_redis_url("rediss+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert address.topology == CLUSTER and address.tls
    assert address.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (address.username, address.password) == ("app", "p@ss")


def test_sentinels_service_and_database():
    address = parse_redis_url("redis+sentinel://:secret@s1:26379,s2:26379,s3:26379/mymaster/3")
    assert address.topology == SENTINEL and not address.tls
    assert address.nodes == (("s1", 26379), ("s2", 26379), ("s3", 26379))
    assert (address.service, address.db, address.username, address.password) == ("mymaster", 3, None, "secret")
    assert parse_redis_url("redis+sentinel://s1:26379/mymaster").db == 0


@pytest.mark.parametrize("url, says", [
    ("memcached://x:1", "starts with"),
    ("redis+cluster://", "starts with"),
    ("redis+cluster://host", "not host:port"),
    ("redis+cluster://host:0", "not host:port"),
    ("redis+cluster://h:1/0", "only database 0"),
    ("redis+sentinel://s1:26379", "name the primary"),
    ("redis+sentinel://s1:26379/m/x", "is a number"),
    ("redis+sentinel://s1:26379/m/1/2", "name the primary"),
])
def test_malformed_urls_say_what_is_wrong(url, says):
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)


def test_settings_take_every_topology_and_refuse_a_bad_one_at_start():
    settings = Settings.from_env({"REDIS_URL": "redis+sentinel://s1:26379/mymaster",
                                  "CACHE_REDIS_URL": "redis+cluster://c1:7000,c2:7000"})
    assert settings.redis_url == "redis+sentinel://s1:26379/mymaster"
    assert settings.cache_redis_url == "redis+cluster://c1:7000,c2:7000"
    with pytest.raises(ConfigError, match="REDIS_URL must be a Redis URL"):
        Settings.from_env({"REDIS_URL": "redis+sentinel://s1:26379"})
    assert Settings.from_env({}).rate_limit_without_redis == "local"
    with pytest.raises(ConfigError, match="RATE_LIMIT_WITHOUT_REDIS"):
        Settings.from_env({"RATE_LIMIT_WITHOUT_REDIS": "maybe"})

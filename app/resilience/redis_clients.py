"""The Redis client a URL names (``app/config/redis_url.py``), with the gateway's timeouts and no retries.

Apart from the guard (``redis_guard.py``) so gunicorn's master can check
Redis at start without importing the metrics.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from app.config.redis_url import CLUSTER, SENTINEL, parse_redis_url
from app.config.settings import Settings


def make_redis(settings: Settings, url: str | None = None) -> redis.Redis | RedisCluster:
    """A client of REDIS_URL (or ``url``): one Redis, a Redis Cluster or a Sentinel-watched primary.

    Every socket has the short timeouts and no client retries (a cluster: one, on a refreshed slot map),
    so a failure reaches the guard at once, whose breaker decides what happens next. Each pool holds a
    connection per worker thread.
    """
    address = parse_redis_url(url or settings.redis_url)
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "max_connections": max(10, settings.gunicorn_threads + 2),
    }
    if address.topology == CLUSTER:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            username=address.username, password=address.password, ssl=address.tls,
            # Slots whose node is down fail alone: the rest of the cluster keeps serving.
            require_full_coverage=False,
            # After a connection error redis-py refreshes the slot map from a live node; one retry then uses
            # it, so the first call after a replica took over succeeds (without it, a breaker probe would fail
            # on the old map and wait out one more cooldown). MOVED and ASK are followed apart from this.
            retry=Retry(NoBackoff(), 1), **common)
    if address.topology == SENTINEL:
        sentinel = Sentinel(address.nodes, sentinel_kwargs={
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_connect_timeout, "retry": None})
        assert address.service is not None
        return sentinel.master_for(
            address.service, username=address.username, password=address.password, db=address.db,
            ssl=address.tls, health_check_interval=30, retry=None, **common)
    return redis.Redis.from_url(address.url, health_check_interval=30, retry=None, **common)

"""What a Redis URL names: one Redis, a Redis Cluster, or a primary found through Sentinel.

The topology lives in the URL's scheme, not in a setting of its own, because
two URLs may name two different ones (``REDIS_URL`` for limits and spend,
``CACHE_REDIS_URL`` for the L2 cache). ``redis://``, ``rediss://`` and
``unix://`` are redis-py's own ``from_url`` URLs, passed to it unchanged. The
two others list several hosts, comma-separated, as redis-py's ``RedisCluster``
(``startup_nodes``) and ``Sentinel`` (``sentinels``) take them:

- ``redis+cluster://[user:password@]host:port[,host:port...]``: seed nodes; the
  client asks them for the cluster's slot map (any one that answers is enough).
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the
  Sentinels and the name they monitor (``sentinel monitor <service> ...``); the
  credentials are the primary's, the Sentinels are asked without any.

``rediss+cluster://`` and ``rediss+sentinel://`` speak TLS to the data nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


@dataclass(frozen=True, slots=True)
class RedisAddress:
    topology: str  # SINGLE, CLUSTER or SENTINEL
    url: str  # as given (SINGLE: what redis-py's from_url reads)
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds, or the Sentinels
    username: str | None = None
    password: str | None = None
    tls: bool = False
    service: str | None = None  # Sentinel's name of the primary
    db: int = 0


def parse_redis_url(url: str) -> RedisAddress:
    """``url`` read as one of the three topologies; ``ValueError`` naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES or not rest:
        raise ValueError(f"a Redis URL starts with one of {', '.join(s + '://' for s in SCHEMES)}")
    if "+" not in scheme:
        return RedisAddress(SINGLE, url)
    topology = CLUSTER if scheme.endswith("+cluster") else SENTINEL
    rest = rest.split("?", 1)[0]
    where, _, path = rest.partition("/")
    username = password = None
    if "@" in where:
        userinfo, where = where.rsplit("@", 1)
        user, has_password, secret = userinfo.partition(":")
        username, password = unquote(user) or None, (unquote(secret) if has_password else None)
    nodes = tuple(_host_port(part) for part in where.split(",") if part)
    if not nodes:
        raise ValueError(f"{scheme}:// needs at least one host:port")
    parts = [p for p in path.split("/") if p]
    if topology == CLUSTER:
        if parts:
            raise ValueError("a Redis Cluster has only database 0: give no path after the hosts")
        return RedisAddress(CLUSTER, url, nodes, username, password, scheme.startswith("rediss"))
    if not parts or len(parts) > 2:
        raise ValueError(f"{scheme}://hosts/<service>[/<db>]: name the primary the Sentinels monitor")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"the database after the service name is a number, not {parts[1]!r}")
        db = int(parts[1])
    return RedisAddress(SENTINEL, url, nodes, username, password, scheme.startswith("rediss"), unquote(parts[0]), db)


def _host_port(part: str) -> tuple[str, int]:
    host, sep, port = part.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{part!r} is not host:port")
    return host.strip("[]"), int(port)

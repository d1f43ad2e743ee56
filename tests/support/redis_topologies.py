"""A real Redis Cluster and a real Sentinel group, started on free loopback ports for one test module.

Debian's redis-server does it all: ``--cluster-enabled yes`` nodes joined by
``redis-cli --cluster create``, and ``redis-server <conf> --sentinel`` for the
Sentinels (``redis-sentinel`` is the same binary). Timeouts are short so a
failover takes a few seconds, not the defaults' tens.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from tests.support.processes import free_port, wait_until

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout and Sentinel's down-after-milliseconds


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run scripts/install-test-tools.sh")
    return path


class RedisNode:
    """One redis-server (or Sentinel) process with its own directory; ``kill()`` is a crash, not a shutdown."""

    def __init__(self, root: Path, *args: str, sentinel_conf: str | None = None) -> None:
        self.port = free_port()
        self.dir = root / str(self.port)
        self.dir.mkdir()
        self.args = args
        self.sentinel_conf = sentinel_conf
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisNode:
        base = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        if self.sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            conf.write_text(self.sentinel_conf)
            cmd = [_binary("redis-server"), str(conf), "--sentinel", *base]
        else:
            cmd = [_binary("redis-server"), *base, "--save", "", "--appendonly", "no", *self.args]
        with open(self.dir / "log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, what=f"redis on {self.port}")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


class ClusterProcesses:
    """``primaries`` primaries, each with ``replicas`` replicas, that take over when their primary dies."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llm-edge-cluster-"))
        self.replicas = replicas
        self.nodes = [RedisNode(self.root, "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                                "--cluster-config-file", "nodes.conf",
                                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                                "--cluster-require-full-coverage", "no")
                      for _ in range(primaries * (1 + replicas))]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterProcesses:
        for node in self.nodes:
            node.start()
        subprocess.run([_binary("redis-cli"), "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        """Every live node says the cluster is ok, every replica is in sync (a replica that never synced
        cannot take over), and every slot is served by a live primary."""
        def ok() -> bool:
            for node in self.nodes:
                if not node.alive:
                    continue
                if node.client().cluster("info")["cluster_state"] != "ok":
                    return False
                replication = node.client().info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            return self.client().get_node_from_key("probe") is not None
        wait_until(ok, timeout=timeout, interval=0.1, what="cluster state ok")

    def client(self) -> RedisCluster:
        alive = next(n for n in self.nodes if n.alive)
        return RedisCluster(host="127.0.0.1", port=alive.port, socket_timeout=2)

    def primary_of(self, key: str) -> RedisNode:
        """The live node that serves ``key``'s slot now."""
        node = self.client().get_node_from_key(key)
        return next(n for n in self.nodes if n.port == node.port)

    def primary_ports(self) -> set[int]:
        return {n.port for n in self.client().get_primaries()}

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


SERVICE = "llm-edge"


class SentinelProcesses:
    """A primary, one replica and three Sentinels (quorum 2) watching them as ``SERVICE``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llm-edge-sentinel-"))
        self.primary = RedisNode(self.root)
        self.replica = RedisNode(self.root, "--replicaof", "127.0.0.1", str(self.primary.port))
        conf = (f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")
        self.sentinels = [RedisNode(self.root, sentinel_conf=conf) for _ in range(3)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{SERVICE}"

    def start(self) -> SentinelProcesses:
        self.primary.start()
        self.replica.start()
        wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up",
                   timeout=20, what="replica in sync")
        for s in self.sentinels:
            s.start()
        # Each Sentinel has found the replica and the other Sentinels: a failover can be agreed.
        wait_until(self._watching, timeout=30, interval=0.2, what="sentinels ready")
        return self

    def _watching(self) -> bool:
        for s in self.sentinels:
            fields = s.client().execute_command("SENTINEL", "MASTER", SERVICE)
            if int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                return False
        return True

    def primary_port(self) -> int:
        """The primary's port as the Sentinels see it now."""
        return int(self.sentinels[0].client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])

    def wait_failover(self, old_port: int, timeout: float = 30) -> float:
        """Seconds until the Sentinels name a primary other than ``old_port`` and it accepts writes."""
        started = time.monotonic()

        def moved() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).set("llm-edge:probe", "1") is True
        wait_until(moved, timeout=timeout, interval=0.1, what="sentinel failover")
        return time.monotonic() - started

    def close(self) -> None:
        for node in (*self.sentinels, self.primary, self.replica):
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)

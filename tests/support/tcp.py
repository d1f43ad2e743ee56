"""Who holds which TCP connection, read from /proc (Linux): proof that a socket was really closed.

Tests use it to check that the gateway dropped its upstream connection when a
client left (no ESTABLISHED socket of the gateway's workers to the emulator)
and that the emulator saw it go (its side is in CLOSE_WAIT or gone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ESTABLISHED, CLOSE_WAIT = "01", "08"


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str
    inode: int


def tcp_sockets() -> list[TcpSocket]:
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
            out.append(TcpSocket(int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state, inode))
    return out


def socket_inodes(pids: list[int]) -> set[int]:
    """Inodes of the sockets the given processes hold open."""
    inodes = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def connections_to(pids: list[int], port: int) -> list[TcpSocket]:
    """ESTABLISHED connections held by ``pids`` whose far end is ``port``."""
    mine = socket_inodes(pids)
    return [s for s in tcp_sockets() if s.inode in mine and s.remote_port == port and s.state == ESTABLISHED]


def far_ends(port: int, peer_ports: set[int]) -> list[TcpSocket]:
    """The sockets listening-side ``port`` holds for connections from ``peer_ports``."""
    return [s for s in tcp_sockets() if s.local_port == port and s.remote_port in peer_ports]

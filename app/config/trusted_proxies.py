"""The client's address: the TCP peer, or, behind a trusted proxy, what ``X-Forwarded-For`` says.

gunicorn's ``forwarded_allow_ips`` only decides whom to believe about the
scheme (``X-Forwarded-Proto``); it never changes ``REMOTE_ADDR``. This applies
the same setting, with the same syntax (addresses, CIDR networks, ``*``), to
``X-Forwarded-For``: the header is believed only when the peer is trusted,
since anyone else can write any address into it. Behind a chain of proxies the
client is the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_list(raw: str) -> tuple[Network, ...] | None:
    """``FORWARDED_ALLOW_IPS`` as networks; None means ``*`` (trust every peer). ValueError names a bad entry."""
    networks = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        if item == "*":
            return None
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise ValueError(item) from None
    return tuple(networks)


_MEMO_SIZE = 4096  # addresses whose trust is remembered; parsing one costs microseconds


class ClientAddress:
    """Callable: (peer address, X-Forwarded-For header) -> the client's address. Thread-safe."""

    def __init__(self, allow: tuple[Network, ...] | None) -> None:
        self.allow = allow
        self._memo: dict[str, bool] = {}

    def trusted(self, address: str) -> bool:
        if self.allow is None:
            return True
        known = self._memo.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            trusted = False
        else:
            trusted = any(ip in net for net in self.allow)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()  # crude but bounded; the balancers' few addresses come straight back
        self._memo[address] = trusted
        return trusted

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if not forwarded_for or not peer or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop
        return hops[0] if hops else peer

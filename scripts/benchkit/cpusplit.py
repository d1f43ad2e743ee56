"""Who used the CPU while a streams-at-scale level ran: the gateway, the drip upstream, the clients.

Why: the load of those rows comes from two Python processes (the asyncio
clients and the asyncio drip upstream, both pinned to the last core) on the
same small machine as the gateway. When they use much of the machine, the
streams/s of a row is a limit of the method, not of the gateway. Reading each
party's CPU time from /proc over the same counted window says which it is, and
how many streams/s the gateway's own cost per stream would allow if it had the
whole machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from benchkit.procs import CpuSample, cpu_ticks

PARTIES = ("gateway", "drip", "clients")  # "gateway": the server measured, the gateway's family or a peer's


def machine_cores() -> int:
    """The cores this process may run on (what the gateway, the drip and the clients share)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Moment:
    """Every party's CPU time at one instant of the counted window."""

    at: float  # time.monotonic()
    cpu: dict[str, CpuSample]

    @classmethod
    def take(cls, gateway_pid: int, drip_pid: int, clients_pid: int) -> Moment:
        return cls(time.monotonic(), {
            "gateway": CpuSample.take(gateway_pid),  # the master and its workers
            "drip": CpuSample({drip_pid: cpu_ticks(drip_pid)}),
            "clients": CpuSample({clients_pid: cpu_ticks(clients_pid)}),
        })


@dataclass(frozen=True)
class CpuSplit:
    """The CPU each party used over a counted window in which ``streams`` streams ended."""

    seconds: float
    streams: int
    micros: dict[str, float]  # party -> CPU microseconds in the window
    cores: int
    server: str = "gateway"  # what the server is called in notes: "gateway", or "peer" for a peer's rows

    @classmethod
    def between(cls, start: Moment, end: Moment, streams: int, cores: int | None = None,
                server: str = "gateway") -> CpuSplit:
        return cls(end.at - start.at, streams,
                   {p: end.cpu[p].micros_since(start.cpu[p]) for p in PARTIES}, cores or machine_cores(), server)

    def said(self, party: str) -> str:
        return self.server if party == "gateway" else party

    def per_stream_ms(self, party: str) -> float | None:
        return self.micros[party] / self.streams / 1000 if self.streams else None

    def cores_used(self, party: str) -> float:
        """The party's share of the machine as cores in use on average (2.0 = all of a 2-core machine)."""
        return self.micros[party] / 1_000_000 / self.seconds if self.seconds > 0 else 0.0

    def gateway_bound(self) -> float | None:
        """Streams/s the server would end at its cost per stream with every core to itself."""
        per_stream = self.per_stream_ms("gateway")
        return self.cores * 1000 / per_stream if per_stream else None

    def load_bound(self, load_cores: int = 1) -> float | None:
        """Streams/s the drip and the clients could drive at their cost per stream on ``load_cores`` cores
        (the bench pins both to one)."""
        per_stream = sum(self.per_stream_ms(p) or 0.0 for p in ("drip", "clients"))
        return load_cores * 1000 / per_stream if per_stream else None

    def machine_bound(self) -> float | None:
        """Streams/s the whole machine could end at the three parties' summed cost per stream."""
        per_stream = sum(self.per_stream_ms(p) or 0.0 for p in PARTIES)
        return self.cores * 1000 / per_stream if per_stream else None

    def note(self) -> str:
        parts = []
        for party in PARTIES:
            ms = self.per_stream_ms(party)
            parts.append(f"{self.said(party)} {'-' if ms is None else f'{ms:.2f}'} ms "
                         f"({self.cores_used(party):.2f} cores)")
        return (f"CPU per stream ended in the window: {', '.join(parts)}, "
                f"all {sum(self.cores_used(p) for p in PARTIES):.2f} of {self.cores} cores")


class WindowSampler:
    """Takes a ``Moment`` when the clients mark their counted window open and closed (``STREAMS_MARK``)."""

    def __init__(self, gateway_pid: int, drip_pid: int, server: str = "gateway") -> None:
        self.gateway_pid = gateway_pid
        self.drip_pid = drip_pid
        self.server = server
        self.moments: dict[str, Moment] = {}

    def on_mark(self, name: str, clients_pid: int) -> None:
        self.moments[name] = Moment.take(self.gateway_pid, self.drip_pid, clients_pid)

    def split(self, streams: int) -> CpuSplit | None:
        """The split over the window, or None when the clients did not mark both ends."""
        if "open" not in self.moments or "close" not in self.moments:
            return None
        return CpuSplit.between(self.moments["open"], self.moments["close"], streams, server=self.server)


def summary(name: str, splits: dict[int, CpuSplit], load_cores: int = 1) -> str | None:
    """One line under the table for one streams-at-scale set: the split at each level, then the bounds at the
    highest level: the server's with every core, the load's (drip and clients) on its ``load_cores`` pinned
    cores, and the machine's with all three."""
    if not splits:
        return None
    levels = []
    for level, split in sorted(splits.items()):
        ms = {p: split.per_stream_ms(p) for p in PARTIES}
        if ms["gateway"] is None:
            continue
        levels.append(f"at {level:,} open streams the {split.server} used {ms['gateway']:.2f} ms of CPU per stream "
                      f"({split.cores_used('gateway'):.2f} cores), the drip {ms['drip']:.2f} ms "
                      f"({split.cores_used('drip'):.2f}), the clients {ms['clients']:.2f} ms "
                      f"({split.cores_used('clients'):.2f})")
    if not levels:
        return None
    top_level, top = max(splits.items())
    bound = top.gateway_bound()
    line = f"CPU split, {name}: " + "; ".join(levels)
    if bound is not None:
        line += (f"; at the costs per stream of {top_level:,} open streams, the {top.server} alone would end "
                 f"~{bound:,.0f} streams/s with the whole {top.cores} cores")
        load, machine = top.load_bound(load_cores), top.machine_bound()
        if load is not None and machine is not None:
            line += (f", the drip and the clients ~{load:,.0f} on their {load_cores} pinned "
                     f"core{'s' if load_cores > 1 else ''}, all three together ~{machine:,.0f}")
    return line

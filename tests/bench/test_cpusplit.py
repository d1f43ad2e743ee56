"""The CPU split of the streams-at-scale rows: per-stream cost, share of the machine, and the gateway's bound."""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.processes import ROOT

sys.path.insert(0, str(ROOT / "scripts"))  # benchkit lives beside the benchmark, as scripts/bench.py imports it
from benchkit.cpusplit import CpuSplit, Moment, WindowSampler, summary
from benchkit.procs import CLK_TCK, CpuSample


def moment(at: float, gateway: int, drip: int, clients: int) -> Moment:
    """CPU ticks of each party (the gateway as a master and one worker) at ``at``."""
    return Moment(at, {"gateway": CpuSample({1: 0, 2: gateway}), "drip": CpuSample({3: drip}),
                       "clients": CpuSample({4: clients})})


def test_split_divides_each_partys_window_cpu_by_the_streams_ended_in_it() -> None:
    # 10 s window, 1,000 streams; the gateway used 12 s of CPU, the drip 3 s, the clients 5 s.
    split = CpuSplit.between(moment(100.0, 0, 0, 0),
                             moment(110.0, 12 * CLK_TCK, 3 * CLK_TCK, 5 * CLK_TCK), streams=1000, cores=2)
    assert split.per_stream_ms("gateway") == pytest.approx(12.0)
    assert split.per_stream_ms("drip") == pytest.approx(3.0)
    assert split.cores_used("gateway") == pytest.approx(1.2)
    assert split.cores_used("clients") == pytest.approx(0.5)
    assert split.gateway_bound() == pytest.approx(2000 / 12)  # 2 cores / 12 ms per stream
    assert "gateway 12.00 ms (1.20 cores), drip 3.00 ms (0.30 cores), clients 5.00 ms (0.50 cores)" in split.note()
    assert "all 2.00 of 2 cores" in split.note()


def test_no_streams_ended_gives_no_per_stream_cost_and_no_bound() -> None:
    split = CpuSplit.between(moment(0.0, 0, 0, 0), moment(5.0, CLK_TCK, 0, 0), streams=0, cores=2)
    assert split.per_stream_ms("gateway") is None
    assert split.gateway_bound() is None
    assert summary("set", {100: split}) is None


def test_summary_names_every_level_and_bounds_by_the_highest() -> None:
    low = CpuSplit.between(moment(0, 0, 0, 0), moment(10, 4 * CLK_TCK, CLK_TCK, CLK_TCK), streams=1000, cores=2)
    high = CpuSplit.between(moment(0, 0, 0, 0), moment(10, 16 * CLK_TCK, 2 * CLK_TCK, 2 * CLK_TCK), streams=2000,
                            cores=2)
    line = summary("gateway streams at scale, relayed", {2000: high, 500: low})
    assert line is not None
    assert line.index("at 500 open streams the gateway used 4.00 ms") < line.index("at 2,000 open streams")
    # at 2,000: gateway 8 ms, drip 1 ms, clients 1 ms per stream
    assert line.endswith("at the costs per stream of 2,000 open streams, the gateway alone would end ~250 streams/s "
                         "with the whole 2 cores, the drip and the clients ~500 on their 1 pinned core, "
                         "all three together ~200")


def test_window_sampler_reads_this_process_between_the_marks() -> None:
    me = os.getpid()
    window = WindowSampler(me, me)
    assert window.split(10) is None  # no marks yet
    window.on_mark("open", me)
    sum(i * i for i in range(3_000_000))  # some CPU for the clock ticks to see
    window.on_mark("close", me)
    split = window.split(10)
    assert split is not None and split.seconds > 0
    assert split.micros["clients"] > 0 and split.micros["clients"] == split.micros["drip"]


def test_a_peers_split_names_the_peer_not_the_gateway() -> None:
    split = CpuSplit.between(moment(0, 0, 0, 0), moment(10, 20 * CLK_TCK, CLK_TCK, CLK_TCK), streams=100, cores=2,
                             server="peer")
    assert split.note().startswith("CPU per stream ended in the window: peer 200.00 ms (2.00 cores), drip")
    line = summary("peer streams at scale: LiteLLM", {250: split})
    assert line is not None and "the peer used 200.00 ms" in line and "the peer alone would end ~10 streams/s" in line
    assert "gateway" not in line

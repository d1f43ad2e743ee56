"""Flights: followers get the leader's answer or live stream; failures and deadlines release them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.cache.coalesce import Coalescer
from app.cache.entry import CachedAnswer
from app.errors import UpstreamError, UpstreamTimeout
from app.formats.canonical import ChatResponse, StreamEnd, StreamStart, TextBlock, TextDelta

pytestmark = pytest.mark.timeout(20)

ANSWER = CachedAnswer(ChatResponse("id", "m", (TextBlock("hi"),), "end_turn"), "openai", "m")


def later(seconds: float) -> float:
    return time.monotonic() + seconds


def test_first_caller_leads_and_the_rest_follow_until_it_ends():
    co = Coalescer()
    flight, leader = co.join("k")
    again, second = co.join("k")
    assert leader and not second and again is flight and len(co) == 1
    other, other_leader = co.join("other")
    assert other_leader and other is not flight
    flight.finish(ANSWER)
    assert len(co) == 1
    fresh, lead_again = co.join("k")
    assert lead_again and fresh is not flight


def test_followers_waiting_for_an_answer_all_get_it():
    co = Coalescer()
    flight, _ = co.join("k")
    with ThreadPoolExecutor(5) as pool:
        waiting = [pool.submit(lambda: co.join("k")[0].wait_answer(later(5))) for _ in range(5)]
        time.sleep(0.05)
        assert not any(f.done() for f in waiting)
        flight.finish(ANSWER, "hit-l2")
        assert [f.result(timeout=5) for f in waiting] == [ANSWER] * 5
    assert flight.tier == "hit-l2"


def test_a_failed_leader_releases_followers_with_nothing():
    co = Coalescer()
    flight, _ = co.join("k")
    with ThreadPoolExecutor(2) as pool:
        answer = pool.submit(flight.wait_answer, later(5))
        started = pool.submit(flight.wait_started, later(5))
        time.sleep(0.02)
        flight.fail()
        flight.finish(ANSWER)  # too late: the first end wins
        assert answer.result(timeout=5) is None and started.result(timeout=5) == "failed"
    assert len(co) == 0


def test_waiting_is_bounded_by_the_deadline():
    flight, _ = Coalescer().join("k")
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        flight.wait_answer(later(0.1))
    assert time.monotonic() - started < 2


def test_a_stream_follower_sees_every_event_from_the_first_live():
    flight, _ = Coalescer().join("k")
    events = [StreamStart("id", "m"), TextDelta(0, "a"), TextDelta(0, "b"), StreamEnd("end_turn")]
    flight.publish(events[0])
    flight.publish(events[1])
    assert flight.wait_started(later(1)) == "live"
    received: list = []
    follower = threading.Thread(target=lambda: received.extend(flight.follow(later(5))))
    follower.start()
    time.sleep(0.05)
    assert follower.is_alive()  # waiting for more
    flight.publish(events[2])
    flight.publish(events[3])
    flight.finish(ANSWER)
    follower.join(5)
    assert received == events


def test_a_stream_that_fails_after_it_started_ends_followers_with_an_error():
    flight, _ = Coalescer().join("k")
    flight.publish(StreamStart("id", "m"))
    stream = flight.follow(later(5))
    assert next(stream) == StreamStart("id", "m")
    flight.fail()
    with pytest.raises(UpstreamError):
        next(stream)


def test_a_leader_that_answered_without_a_stream_is_done_not_live():
    flight, _ = Coalescer().join("k")
    flight.finish(ANSWER)
    assert flight.wait_started(later(1)) == "done" and flight.wait_answer(later(1)) == ANSWER


def test_followers_lose_no_event_when_the_leader_publishes_without_pausing():
    """The leader takes the condition only when a follower waits: no follower may miss a wake-up. At
    checkpoints the leader waits for every follower to have seen all it published: a lost wake-up leaves
    one behind until the next event, and the checkpoint fails."""
    co = Coalescer()
    flight, _ = co.join("k")
    events = [TextDelta(0, str(i)) for i in range(1000)]
    seen = [0] * 4
    behind: list[int] = []

    def lead() -> None:
        for ev in events:
            flight.publish(ev)
            if int(ev.text) % 50 == 49:
                until = later(2)
                while min(seen) < int(ev.text) + 1 and time.monotonic() < until:
                    time.sleep(0.0005)
                if min(seen) < int(ev.text) + 1:
                    behind.append(int(ev.text))
        flight.finish(ANSWER)

    def follow(n: int) -> list:
        assert flight.wait_started(later(30)) == "live"
        got = []
        for ev in flight.follow(later(30)):
            got.append(ev)
            seen[n] = len(got)
        return got
    with ThreadPoolExecutor(4) as pool:
        followers = [pool.submit(follow, n) for n in range(4)]
        time.sleep(0.05)  # the followers wait for the first event
        lead()
        assert not behind
        for f in followers:
            assert f.result() == events

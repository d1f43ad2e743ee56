"""Which of a model's deployments a request tries first, and which it skips: the worker's view of each.

A model listed with ``deployments`` in ``config/models.yaml`` resolves to one target per deployment,
side by side (``Target.group``). Per request, ``order`` puts a group's deployments in the order they are
tried, by the group's strategy:

- ``weighted`` (default): weighted random without replacement (an exponential race: each deployment draws
  ``Exp(1) / weight``, lowest first), so the first pick is each deployment's share of the weights.
- ``least-busy``: fewest attempts in flight in this worker first; ties by the weighted draw.
- ``latency``: peak-EWMA with power of two choices (Finagle's and Linkerd's balancer): two deployments drawn
  by weight, the one with the lower ``latency x (in flight + 1)`` goes first. The latency estimate jumps to
  any slower observation at once and decays towards faster ones with a time constant of ``LATENCY_DECAY``.

A deployment that failed in a way that is its own (429, 5xx, unreachable, cut, bad answer, rejected key) is
cooled down: skipped for its ``retry-after``, or DEPLOYMENT_COOLDOWN when it sent none. Its circuit breaker
(keyed by the deployment's name) is the pipeline's, as for any target. In flight counts an attempt until
its answer, or a stream's first event, is in; the latency is that same time.

State is per worker, like the breakers: nothing shared, nothing locked across processes.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from app.errors import DEADLINE, GatewayError, UpstreamError, classify
from app.health import Check
from app.observability import metrics
from app.providers.routing import DeploymentGroup, Target

T = TypeVar("T")
LATENCY_DECAY = 10.0  # seconds: how long a slow observation keeps weighing on the latency estimate


@dataclass(slots=True)
class DeploymentState:
    """What this worker knows of one deployment (changed under the balancer's lock)."""

    target: Target
    weight: float
    in_flight: int = 0
    latency: float = 0.0  # peak-EWMA of seconds to answer; 0 until the first answer
    measured_at: float = 0.0
    cool_until: float = 0.0  # monotonic time; skipped until then

    def cost(self) -> float:
        return self.latency * (self.in_flight + 1)


class Balancer:
    """Orders each request's deployments and keeps their in-flight count, latency and cooldown."""

    def __init__(self, groups: Iterable[DeploymentGroup], strategy: str = "weighted", cooldown: float = 10.0, *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.default_strategy = strategy
        self.cooldown = cooldown
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._groups = {g.model: g for g in groups}
        self._states: dict[str, DeploymentState] = {}
        for group in self._groups.values():
            for dep in group.deployments:
                name = dep.target.breaker_name
                self._states[name] = DeploymentState(dep.target, dep.weight)
                metrics.DEPLOYMENT_IN_FLIGHT.labels(name).set(0)
                metrics.DEPLOYMENT_COOLDOWN_UNTIL.labels(name).set(0)
                for outcome in ("ok", "failed"):
                    metrics.DEPLOYMENT_ATTEMPTS.labels(name, outcome)

    # ---- per request

    def order(self, targets: tuple[Target, ...]) -> tuple[Target, ...]:
        """``targets`` with each group's deployments in the order to try them, cooled-down ones left out."""
        if not self._states:
            return targets
        out: list[Target] = []
        i = 0
        while i < len(targets):
            group = targets[i].group
            if group is None:
                out.append(targets[i])
                i += 1
                continue
            j = i
            while j < len(targets) and targets[j].group == group:
                j += 1
            out += self._order_group(group, targets[i:j])
            i = j
        return tuple(out)

    def _order_group(self, group: str, members: tuple[Target, ...]) -> list[Target]:
        now = self._clock()
        rng = self._rng
        with self._lock:
            ready = [self._states[t.breaker_name] for t in members if self._states[t.breaker_name].cool_until <= now]
            # Exponential race: lowest Exp(1)/weight first is weighted sampling without replacement.
            drawn = sorted(ready, key=lambda s: -math.log(1.0 - rng.random()) / s.weight)
            strategy = self._groups[group].strategy or self.default_strategy
            if strategy == "least-busy":
                rank = {id(s): k for k, s in enumerate(drawn)}
                drawn.sort(key=lambda s: (s.in_flight, rank[id(s)]))
            elif strategy == "latency" and len(drawn) > 1:
                first = min(drawn[:2], key=lambda s: s.cost())  # power of two choices
                rest = sorted((s for s in drawn if s is not first), key=lambda s: s.cost())
                drawn = [first, *rest]
        return [s.target for s in drawn]

    def track(self, target: Target, attempt: Callable[[], T]) -> T:
        """``attempt()``, counted in flight while it runs, its latency or failure recorded when it ends."""
        started = self.begin(target)
        failed: BaseException | None = None
        try:
            return attempt()
        except BaseException as exc:
            failed = exc
            raise
        finally:
            self.end(target, started, failed)

    def begin(self, target: Target) -> float:
        """An attempt at ``target`` starts (its start time, for ``end``)."""
        state = self._states.get(target.breaker_name)
        if state is not None:
            with self._lock:
                state.in_flight += 1
            metrics.DEPLOYMENT_IN_FLIGHT.labels(target.breaker_name).inc()
        return self._clock()

    def end(self, target: Target, started: float, err: BaseException | None) -> None:
        """The attempt begun at ``started`` is over: answered (``err`` None) or failed with ``err``."""
        state = self._states.get(target.breaker_name)
        if state is None:
            return
        now = self._clock()
        name = target.breaker_name
        cool = _cooldown(err, self.cooldown) if err is not None else None
        with self._lock:
            state.in_flight -= 1
            if err is None:
                _observe(state, now - started, now)
            elif cool is not None:
                state.cool_until = max(state.cool_until, now + cool)
        metrics.DEPLOYMENT_IN_FLIGHT.labels(name).dec()
        if err is None or isinstance(err, GatewayError):
            metrics.DEPLOYMENT_ATTEMPTS.labels(name, "ok" if err is None else "failed").inc()
        if cool is not None:
            metrics.DEPLOYMENT_COOLDOWN_UNTIL.labels(name).set(time.time() + cool)

    def retry_after(self, targets: Iterable[Target]) -> float:
        """Seconds until the first of ``targets``' cooled-down deployments is tried again (0: none cooling)."""
        now = self._clock()
        with self._lock:
            waits = [self._states[t.breaker_name].cool_until - now for t in targets if t.breaker_name in self._states]
        return max(0.0, min(waits, default=0.0))

    # ---- what others read

    def health(self) -> Check:
        """Each deployment's state in this worker; ``degraded`` while any is cooling down."""
        now = self._clock()
        detail: dict[str, object] = {}
        cooling = False
        with self._lock:
            for group in self._groups.values():
                deps = {}
                for dep in group.deployments:
                    s = self._states[dep.target.breaker_name]
                    left = max(0.0, s.cool_until - now)
                    cooling = cooling or left > 0
                    deps[dep.target.breaker_name] = {
                        "provider": s.target.provider.name, "model": s.target.model, "weight": s.weight,
                        "state": "cooling" if left > 0 else "ready", "cooling_for": round(left, 3),
                        "in_flight": s.in_flight, "latency_ms": round(s.latency * 1000, 1)}
                detail[group.model] = {"strategy": group.strategy or self.default_strategy, "deployments": deps}
        return Check("degraded" if cooling else "ok", {"worker_pid": os.getpid(), "models": detail})


def _observe(state: DeploymentState, rtt: float, now: float) -> None:
    """Peak-EWMA: a slower answer counts at once, a faster one pulls the estimate down over time."""
    if rtt >= state.latency or state.measured_at == 0.0:
        state.latency = rtt
    else:
        w = math.exp(-max(0.0, now - state.measured_at) / LATENCY_DECAY)
        state.latency = state.latency * w + rtt * (1.0 - w)
    state.measured_at = now


def _cooldown(err: BaseException, default: float) -> float | None:
    """How long a failure sidelines its deployment, or None when it says nothing against it.

    The deployment's own failures cool it: 429, 5xx, unreachable, cut, unreadable, rejected key. Not: the
    caller's 4xx (raised before any other deployment is tried), the request's own deadline, a client gone.
    """
    if not isinstance(err, UpstreamError):
        return None
    verdict = classify(err)
    if not verdict.may_fall_back or verdict.retry_on == DEADLINE:
        return None
    return err.retry_after if err.retry_after is not None else default



"""The reliability circuit breaker on a fake clock: closed, open, half-open and back."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from agentmesh import (
    AgentUnavailableError,
    BreakerOpenError,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    MessageBlocked,
    SkillInputError,
    TaskCanceledError,
)
from agentmesh.breaker import Breakers, call_through


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=threshold, cooldown_s=cooldown)
    return CircuitBreaker("agent:x", policy, clock=clock), clock


def test_opens_after_threshold_failures_in_a_row_and_fails_fast() -> None:
    b, clock = breaker(threshold=3)
    for _ in range(2):
        b.allow()
        b.failed(AgentUnavailableError("dead"))
    assert b.state is BreakerState.CLOSED
    b.allow()
    b.failed(AgentUnavailableError("dead again"))
    assert b.state is BreakerState.OPEN
    clock.now += 4.0
    with pytest.raises(BreakerOpenError) as info:
        b.allow()
    assert info.value.failures == 3 and info.value.retry_in_s == pytest.approx(6.0)
    assert "dead again" in info.value.cause and "agent:x" in str(info.value)


def test_a_success_resets_the_count() -> None:
    b, _ = breaker(threshold=2)
    b.failed(AgentUnavailableError("one"))
    b.succeeded()
    b.failed(AgentUnavailableError("two"))
    assert b.state is BreakerState.CLOSED and b.failures == 1


def test_half_open_lets_one_trial_call_through() -> None:
    b, clock = breaker(threshold=1, cooldown=10.0)
    b.failed(AgentUnavailableError("dead"))
    clock.now += 10.0
    assert b.state is BreakerState.HALF_OPEN
    b.allow()  # the trial call
    with pytest.raises(BreakerOpenError):
        b.allow()  # everyone else still fails fast while it is out
    b.succeeded()
    assert b.state is BreakerState.CLOSED
    b.allow()


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    b, clock = breaker(threshold=2, cooldown=10.0)
    b.failed(AgentUnavailableError("1"))
    b.failed(AgentUnavailableError("2"))
    clock.now += 11.0
    b.allow()
    b.failed(AgentUnavailableError("trial"))
    assert b.state is BreakerState.OPEN
    clock.now += 9.0
    assert b.state is BreakerState.OPEN
    clock.now += 1.0
    assert b.state is BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    "error",
    [
        SkillInputError("a", "s", ["bad"]),
        MessageBlocked("refused", decision=None),
        TaskCanceledError("t", agent="a"),
        BreakerOpenError("agent:y", failures=1, cause="", retry_in_s=1.0),
        ValueError("not a run failure"),
    ],
)
def test_errors_that_say_nothing_about_health_do_not_count(error: Exception) -> None:
    b, clock = breaker(threshold=1)
    b.failed(error)
    assert b.state is BreakerState.CLOSED and b.failures == 0
    # nor do they count as a trial's verdict: the slot is released for the next caller
    b.failed(AgentUnavailableError("dead"))
    clock.now += 10.0
    b.allow()
    b.failed(error)
    assert b.state is BreakerState.HALF_OPEN
    b.allow()


async def test_call_through_never_calls_while_open() -> None:
    b, _ = breaker(threshold=1)
    calls: list[int] = []

    async def call() -> int:
        calls.append(1)
        raise AgentUnavailableError("dead")

    with pytest.raises(AgentUnavailableError):
        await call_through(b, call)
    with pytest.raises(BreakerOpenError):
        await call_through(b, call)
    assert len(calls) == 1


async def test_a_canceled_trial_releases_its_slot() -> None:
    b, clock = breaker(threshold=1, cooldown=5.0)
    b.failed(AgentUnavailableError("dead"))
    clock.now += 5.0
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    job = asyncio.ensure_future(call_through(b, hang))
    await started.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    b.allow()  # the next caller may try


def test_breakers_are_per_target_and_none_without_a_policy() -> None:
    clock = FakeClock()
    breakers = Breakers(BreakerPolicy(failure_threshold=1), clock=clock)
    a, m = breakers.get("agent:a"), breakers.get("model:m")
    assert a is not None and m is not None and a is breakers.get("agent:a") and a is not m
    a.failed(AgentUnavailableError("dead"))
    assert breakers.states() == {"agent:a": BreakerState.OPEN, "model:m": BreakerState.CLOSED}
    assert Breakers(None).get("agent:a") is None


@pytest.mark.parametrize("fields", [{"failure_threshold": 0}, {"cooldown_s": 0}, {"x": 1}])
def test_bad_breaker_policies_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BreakerPolicy.model_validate(fields)

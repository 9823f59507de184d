"""RetryPolicy: its checks, which errors it retries, and the jittered backoff it draws."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from agentmesh import (
    AgentLostError,
    AgentUnavailableError,
    BreakerOpenError,
    ConfigError,
    Mesh,
    MessageBlocked,
    NodeTimeoutError,
    PlanStep,
    RetryPolicy,
    RunError,
    SkillFailedError,
    SkillInputError,
)

from .mesh_agents import POLICY, Joiner


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"retry_on": ("UserError",)}, "not a run failure"),
        ({"retry_on": ("MessageBlocked",)}, "not a run failure"),
        ({"retry_on": ("ValueError",)}, "not an agentmesh error"),
        ({"retry_on": ("NoSuchError",)}, "not an agentmesh error"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"base_delay_s": 2.0, "max_delay_s": 1.0}, "at least base_delay_s"),
        ({"jitter": "decorrelated"}, "full"),
        ({"retry_budget": -1}, "greater than or equal to 0"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"multiplier": 0.5}, "greater than or equal to 1"),
        ({"retries": 3}, "Extra inputs"),
    ],
)
def test_bad_policies_are_refused(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RetryPolicy.model_validate(fields)


def test_default_policy_retries_dead_agents_and_timeouts_only() -> None:
    policy = RetryPolicy()
    timeout = NodeTimeoutError("s", agent="a", timeout_s=1, task_id="t", canceled=True)
    assert policy.retries(AgentUnavailableError("dead"))
    assert policy.retries(timeout)
    assert not policy.retries(SkillFailedError("a", "s", "ValueError", "boom"))
    assert not policy.retries(RuntimeError("not ours"))


def test_user_errors_denials_breakers_and_lost_agents_are_never_retried() -> None:
    policy = RetryPolicy(retry_on=("RunError",))
    assert policy.retries(SkillFailedError("a", "s", "ValueError", "boom"))
    assert not policy.retries(SkillInputError("a", "s", ["bad"]))
    assert not policy.retries(MessageBlocked("no", decision=None))
    open_ = BreakerOpenError("agent:a", failures=3, cause="x", retry_in_s=1.0)
    assert not policy.retries(open_)
    assert not policy.retries(AgentLostError("a", "gone", node_lost=True))


def test_max_retries_shorthand() -> None:
    policy = RetryPolicy.from_max_retries(2)
    assert policy.max_attempts == 3 and policy.retries(RunError("any run failure"))
    with pytest.raises(ConfigError, match="whole number"):
        RetryPolicy.from_max_retries(-1)


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_backoff_grows_to_its_cap_within_the_jitter_window(jitter: str) -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=3.0, multiplier=2.0, jitter=jitter)
    rng = random.Random(11)
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        for _ in range(50):
            delay = policy.backoff(retry, rng)
            low = {"full": 0.0, "equal": cap / 2, "none": cap}[jitter]
            assert low <= delay <= cap, (retry, delay)


def test_backoff_is_reproducible_with_a_seeded_rng_and_spread_without_one() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    first = [policy.backoff(n, random.Random(3)) for n in range(1, 5)]
    again = [policy.backoff(n, random.Random(3)) for n in range(1, 5)]
    assert first == again
    draws = {policy.backoff(3, random.Random(seed)) for seed in range(20)}
    assert len(draws) == 20  # full jitter: nodes that failed together do not retry together


def test_mesh_refuses_conflicting_or_bad_fault_settings() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Mesh([Joiner], policy=POLICY, retry=RetryPolicy(), max_retries=1)
    with pytest.raises(ConfigError, match="max_restarts"):
        Mesh([Joiner], policy=POLICY, max_restarts=-1)
    with pytest.raises(ConfigError, match="max_retries"):
        Mesh([Joiner], policy=POLICY, max_retries=-2)
    mesh = Mesh([Joiner], policy=POLICY, max_retries=2)
    assert mesh.retry.max_attempts == 3
    assert Mesh([Joiner], policy=POLICY).retry == RetryPolicy()


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_step_time_limit_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        PlanStep(id="s", agent="a", skill="k", timeout_s=timeout)

"""Faults on a real mesh: retries with backoff, the run's retry budget, node time limits,
circuit breakers per agent and per model, and agent actors that die mid-node (killed for real)
being restarted by Ray, joined again and their node retried, the node's effect done once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import ray

from agentmesh import (
    Agent,
    BreakerOpenError,
    BreakerPolicy,
    BreakerState,
    ConfigError,
    Mesh,
    ModelError,
    NodeStatus,
    Plan,
    PlanStep,
    Policy,
    Resources,
    RetryPolicy,
    RunFailedError,
    ScriptedError,
    ScriptedModel,
    skill,
)
from agentmesh.breaker import Breakers
from agentmesh.inference import GenerateRequest
from agentmesh.planner import TemplatePlanner

POLICY = Policy.from_yaml(
    """
name: faults
default: block
messages:
  - {from: [user], to: ["*"]}
  - {from: [fragile], to: [helper.shout]}
  - {from: [caller], to: [fragile.crash_once]}
"""
)
BREAKER = BreakerPolicy(failure_threshold=3, cooldown_s=60.0)
FAST = {"base_delay_s": 0.01, "max_delay_s": 0.05}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


class Flaky:
    attempts: dict[str, int] = {}

    @skill
    def flaky(self, key: str, failures: int) -> int:
        """Fail the first ``failures`` calls for ``key``, then return the call's number."""
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.attempts[key] <= failures:
            raise RuntimeError(f"attempt {self.attempts[key]} fails")
        return self.attempts[key]


class Fragile(Flaky, Agent):
    """Dies, hangs and fails on request."""

    name = "fragile"
    resources = Resources(num_cpus=0.1)

    @skill
    async def crash_once(self, marker: str, effects: str, text: str) -> str:
        """Kill this actor's process on the first attempt (the marker remembers it); on a later
        one, ask the helper (only a mesh member that was joined can) and record the effect."""
        if not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        reply = str(await self.call("helper", "shout", text=text))
        _append(effects, str(os.getpid()))
        return reply

    @skill
    async def hang_once(self, marker: str, effects: str) -> int:
        """On the first attempt, say so (the marker) and wait to be killed; later, record the
        effect and return this process's id."""
        if not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            await asyncio.sleep(300)
            raise RuntimeError("was never killed")
        _append(effects, str(os.getpid()))
        return os.getpid()

    @skill
    async def nap(self, seconds: float, log: str) -> str:
        """Sleep; a cancellation is written to ``log``."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            _append(log, "canceled")
            raise
        return "rested"

    @skill
    async def ask(self, agent: str, skill: str) -> str:
        """Call another agent's skill (the policy may refuse it)."""
        return str(await self.call(agent, skill))


class Helper(Flaky, Agent):
    """Answers the fragile agent."""

    name = "helper"
    resources = Resources(num_cpus=0.1)

    @skill
    def shout(self, text: str) -> str:
        """The text in capitals."""
        return text.upper()


class Caller(Agent):
    """Calls the fragile agent: a nested call whose callee dies."""

    name = "caller"
    resources = Resources(num_cpus=0.1)

    @skill
    async def relay(self, marker: str, effects: str, text: str) -> str:
        """Ask fragile.crash_once."""
        args = {"marker": marker, "effects": effects, "text": text}
        return str(await self.call("fragile", "crash_once", **args))


class Thinker(Agent):
    """Asks its model."""

    name = "thinker"
    model = "m"
    resources = Resources(num_cpus=0.1)

    @skill
    async def think(self, prompt: str) -> str:
        """The model's answer."""
        return (await self.generate(prompt)).text


def plan(*steps: PlanStep) -> TemplatePlanner:
    return TemplatePlanner(lambda goal: Plan(goal=goal, steps=list(steps)))


@pytest.fixture(scope="module")
async def fmesh(ray_session: None) -> AsyncIterator[Mesh]:
    models = {
        "m": ScriptedModel([ScriptedError(message="m broke")] * 3 + ["never read"]),
        "p": ScriptedModel([ScriptedError(message="p broke")] * 4 + ["p answers"]),
    }
    agents = [Fragile, Helper, Caller, Thinker]
    async with Mesh(
        agents, policy=POLICY, models=models, breaker=BREAKER, breaker_clock=CLOCK
    ) as mesh:
        yield mesh


@pytest.fixture(autouse=True)
def fresh_breakers(fmesh: Mesh) -> None:
    """Each test starts with closed agent breakers (they live in the driver)."""
    fmesh.breakers = Breakers(BREAKER, clock=CLOCK)


async def test_retries_back_off_with_seeded_jitter_and_keep_every_error(fmesh: Mesh) -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=("RunError",), **FAST)
    step = PlanStep(id="f", agent="helper", skill="flaky", args={"key": "jit", "failures": 2})
    result = await fmesh.run("retry", planner=plan(step), retry=policy, rng=random.Random(5))
    node = result.node("f")
    assert node.status is NodeStatus.SUCCEEDED and node.attempts == 3 and result.output == 3
    assert node.error is None and node.gave_up is None
    rng = random.Random(5)  # the same draws, in the same order
    assert [(e.attempt, e.type, e.retry_in_s) for e in node.errors] == [
        (1, "SkillFailedError", policy.backoff(1, rng)),
        (2, "SkillFailedError", policy.backoff(2, rng)),
    ]
    assert "attempt 2 fails" in node.errors[1].message


async def test_a_run_refuses_two_retry_settings_before_planning(fmesh: Mesh) -> None:
    def never(goal: str) -> Plan:
        raise AssertionError("planned anyway")

    with pytest.raises(ConfigError, match="not both"):
        await fmesh.run("x", planner=TemplatePlanner(never), retry=RetryPolicy(), max_retries=1)


async def test_skill_failures_are_not_retried_by_default(fmesh: Mesh) -> None:
    step = PlanStep(id="f", agent="helper", skill="flaky", args={"key": "dflt", "failures": 1})
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("once", planner=plan(step))
    node = info.value.result.node("f")
    assert node.attempts == 1 and node.gave_up == "not_retryable"
    assert node.error is not None and node.error.type == "SkillFailedError"


async def test_user_errors_and_security_denials_are_never_retried(fmesh: Mesh) -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=("RunError",), **FAST)
    planner = plan(
        PlanStep(
            id="blocked", agent="fragile", skill="ask", args={"agent": "caller", "skill": "relay"}
        ),
        PlanStep(
            id="unknown", agent="fragile", skill="ask", args={"agent": "nobody", "skill": "x"}
        ),
    )
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("never", planner=planner, retry=policy)
    result = info.value.result
    for step, error in [("blocked", "MessageBlocked"), ("unknown", "UnknownAgentError")]:
        node = result.node(step)
        assert node.error is not None and node.error.type == error, node.error
        assert node.attempts == 1 and node.gave_up == "not_retryable"


async def test_the_run_retry_budget_caps_retries_across_nodes(fmesh: Mesh) -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=("RunError",), retry_budget=1, **FAST)
    planner = plan(
        PlanStep(id="a", agent="helper", skill="flaky", args={"key": "bud-a", "failures": 9}),
        PlanStep(id="b", agent="fragile", skill="flaky", args={"key": "bud-b", "failures": 9}),
    )
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("budget", planner=planner, retry=policy)
    nodes = info.value.result.nodes
    assert sum(n.attempts for n in nodes) == 3  # two first attempts and the one retry
    assert [n.gave_up for n in nodes] == ["budget", "budget"]
    assert sorted(len(n.errors) for n in nodes) == [1, 2]


async def test_nodes_past_their_time_limit_are_canceled_and_retried(
    fmesh: Mesh, tmp_path: Path
) -> None:
    log = str(tmp_path / "canceled.log")
    policy = RetryPolicy(max_attempts=2, timeout_s=0.5, **FAST)
    planner = plan(
        PlanStep(id="slow", agent="fragile", skill="nap", args={"seconds": 60, "log": log}),
        # the step's own limit replaces the policy's
        PlanStep(
            id="patient",
            agent="helper",
            skill="shout",
            args={"text": "done"},
            timeout_s=30,
        ),
        PlanStep(
            id="long",
            agent="fragile",
            skill="nap",
            args={"seconds": 0.8, "log": log},
            timeout_s=30,
        ),
    )
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("timeouts", planner=planner, retry=policy)
    result = info.value.result
    slow = result.node("slow")
    assert slow.attempts == 2 and slow.gave_up == "attempts"
    assert [e.type for e in slow.errors] == ["NodeTimeoutError"] * 2
    assert slow.error is not None and "0.5s limit" in slow.error.message
    assert "canceled" in slow.error.message and "could not" not in slow.error.message
    assert result.node("long").output == "rested" and result.node("patient").output == "DONE"
    # both attempts' tasks were canceled at the agent (it writes the log as it stops)
    for _ in range(100):
        if Path(log).exists() and Path(log).read_text().count("canceled") == 2:
            break
        await asyncio.sleep(0.1)
    assert Path(log).read_text().count("canceled") == 2


async def test_an_agent_breaker_opens_fails_nodes_fast_and_closes_after_a_trial(
    fmesh: Mesh,
) -> None:
    key = "brk"
    policy = RetryPolicy(max_attempts=5, retry_on=("RunError",), **FAST)
    failing = plan(
        PlanStep(id="f", agent="helper", skill="flaky", args={"key": key, "failures": 3})
    )
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("open it", planner=failing, retry=policy)
    node = info.value.result.node("f")
    # three failures open the breaker: the fourth attempt fails fast, no call made
    assert node.attempts == 3 and node.gave_up == "breaker"
    assert [e.type for e in node.errors] == ["SkillFailedError"] * 3 + ["BreakerOpenError"]
    assert fmesh.breakers.states()["agent:helper"] is BreakerState.OPEN
    with pytest.raises(RunFailedError) as info:
        await fmesh.run("still open", planner=failing, retry=policy)
    node = info.value.result.node("f")
    assert node.attempts == 0 and node.error is not None
    assert node.error.type == "BreakerOpenError" and "attempt 3 fails" in node.error.message
    CLOCK.now += BREAKER.cooldown_s
    result = await fmesh.run("trial", planner=failing, retry=policy)
    assert result.output == 4  # the helper saw 3 calls before: none while the breaker was open
    assert fmesh.breakers.states()["agent:helper"] is BreakerState.CLOSED


async def test_a_model_breaker_in_the_driver_fails_fast_without_calling_the_model(
    fmesh: Mesh,
) -> None:
    request = GenerateRequest(prompt="hello")
    for _ in range(3):
        with pytest.raises(ModelError, match="p broke"):
            await fmesh.generate("p", request)
    with pytest.raises(BreakerOpenError, match="model:p"):
        await fmesh.generate("p", request)
    assert len(await fmesh.model_handle("p").calls.remote()) == 3
    CLOCK.now += BREAKER.cooldown_s
    with pytest.raises(ModelError, match="p broke"):  # the trial call fails: open again
        await fmesh.generate("p", request)
    with pytest.raises(BreakerOpenError):
        await fmesh.generate("p", request)
    CLOCK.now += BREAKER.cooldown_s
    assert (await fmesh.generate("p", request)).text == "p answers"
    await fmesh.model_handle("p").assert_consumed.remote()


async def test_a_model_breaker_in_an_agent_fails_its_calls_fast(fmesh: Mesh) -> None:
    for _ in range(3):
        with pytest.raises(ModelError, match="m broke"):
            await fmesh.call("thinker", "think", prompt="hm")
    with pytest.raises(BreakerOpenError, match="model:m"):
        await fmesh.call("thinker", "think", prompt="hm")
    assert len(await fmesh.model_handle("m").calls.remote()) == 3


async def test_an_agent_that_dies_mid_node_is_restarted_joined_and_retried(
    fmesh: Mesh, tmp_path: Path
) -> None:
    marker, effects = tmp_path / "crashed", tmp_path / "effects"
    args = {"marker": str(marker), "effects": str(effects), "text": "once"}
    step = PlanStep(id="c", agent="fragile", skill="crash_once", args=args)
    result = await fmesh.run("crash", planner=plan(step), rng=random.Random(1))
    node = result.node("c")
    assert result.output == "ONCE" and node.attempts == 2  # the helper answered it: joined
    assert [e.type for e in node.errors] == ["AgentUnavailableError"]
    lines = effects.read_text().splitlines()
    assert len(lines) == 1 and lines[0] != marker.read_text()  # once, by a new process


async def test_an_agent_killed_by_ray_mid_node_is_restarted_and_retried(
    fmesh: Mesh, tmp_path: Path
) -> None:
    marker, effects = tmp_path / "hung", tmp_path / "effects"
    step = PlanStep(
        id="h",
        agent="fragile",
        skill="hang_once",
        args={"marker": str(marker), "effects": str(effects)},
    )
    run = asyncio.ensure_future(fmesh.run("kill", planner=plan(step)))
    for _ in range(1800):  # bounded: three minutes on a loaded machine
        if marker.exists() or run.done():
            break
        await asyncio.sleep(0.1)
    assert marker.exists(), "the node never started"
    ray.kill(fmesh.agent_handle("fragile"), no_restart=False)
    result = await run
    node = result.node("h")
    assert node.attempts == 2 and [e.type for e in node.errors] == ["AgentUnavailableError"]
    assert effects.read_text().splitlines() == [str(result.output)]
    assert str(result.output) != marker.read_text()


async def test_a_dead_callee_is_joined_again_before_its_caller_is_retried(
    fmesh: Mesh, tmp_path: Path
) -> None:
    marker, effects = tmp_path / "crashed", tmp_path / "effects"
    args = {"marker": str(marker), "effects": str(effects), "text": "nested"}
    step = PlanStep(id="r", agent="caller", skill="relay", args=args)
    policy = RetryPolicy(max_attempts=4, **FAST)
    result = await fmesh.run("nested", planner=plan(step), retry=policy)
    node = result.node("r")
    assert result.output == "NESTED" and node.attempts >= 2
    assert {e.type for e in node.errors} == {"AgentUnavailableError"}
    assert len(effects.read_text().splitlines()) == 1


async def test_an_agent_whose_restarts_are_spent_fails_its_node_as_lost(
    ray_session: None, tmp_path: Path
) -> None:
    marker, effects = tmp_path / "crashed", tmp_path / "effects"
    args = {"marker": str(marker), "effects": str(effects), "text": "x"}
    step = PlanStep(id="c", agent="fragile", skill="crash_once", args=args)
    async with Mesh([Fragile, Helper], policy=POLICY, max_restarts=0) as mesh:
        with pytest.raises(RunFailedError) as info:
            await mesh.run("no restarts", planner=plan(step))
    node = info.value.result.node("c")
    assert node.gave_up == "lost" and node.attempts == 1
    assert [e.type for e in node.errors] == ["AgentUnavailableError", "AgentLostError"]
    assert node.error is not None and "restarts are spent" in node.error.message
    assert not effects.exists()

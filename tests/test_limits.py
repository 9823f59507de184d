"""Rate limits, budgets and the circuit breaker: the policy's ``limits:`` section.

The monitor tests inject a fake monotonic clock, so they are deterministic and never sleep; one
test runs a hijacked-style agent through a real mesh.
"""

from __future__ import annotations

import importlib.resources
import pickle
import re
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue

from agentmesh import (
    Agent,
    BudgetExhausted,
    CircuitOpen,
    Mesh,
    MessageBlocked,
    Policy,
    PolicyError,
    RateLimited,
    Resources,
    SecurityDenied,
    ToolCallBlocked,
    UnknownAgentError,
    load_policy,
    skill,
)
from agentmesh._private.limits_policy import per_second
from agentmesh.errors import outside_text
from agentmesh.security import Decision, LimitsPolicy, SecurityMonitor, raise_for_decision

from .mesh_agents import FLAKY, POLICY, Left


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class OtherProcessClock(FakeClock):
    """Unpickles as a clock a million seconds ahead: another process's monotonic clock."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (FakeClock, (self.t + 1_000_000,))


def monitor(limits: str, *, clock: FakeClock | None = None) -> SecurityMonitor:
    policy = Policy.from_yaml(
        textwrap.dedent(
            """
            name: limits
            messages: [{from: ["*"], to: ["*"]}]
            tools: {"*": ["mail.*", "docs.*"]}
            """
        )
        + textwrap.dedent(limits),
        source="limits.yaml",
    )
    return SecurityMonitor(policy, clock=clock or FakeClock())


def tool(m: SecurityMonitor, agent: str, name: str = "mail.send") -> Decision:
    """Vet a tool call and raise what the caller would see."""
    decision = m.vet_tool_call(agent, name, "{}")
    raise_for_decision(decision)
    return decision


def message(m: SecurityMonitor, sender: str, target: str = "writer.draft") -> Decision:
    recipient, skill_name = target.split(".")
    decision = m.vet_message(sender, recipient, skill_name, "hello")
    raise_for_decision(decision)
    return decision


# --- buckets and budgets -------------------------------------------------------------------


def test_bucket_refills_with_the_injected_clock() -> None:
    clock = FakeClock()
    m = monitor("limits: {agents: {researcher: {rate: 2/s}}}", clock=clock)
    tool(m, "researcher")
    tool(m, "researcher")  # burst defaults to one second's worth: 2
    with pytest.raises(RateLimited, match=r"retry in 0\.50s") as info:
        tool(m, "researcher")
    assert not isinstance(info.value, BudgetExhausted)
    assert info.value.decision.rule == "limits.agents['researcher'].rate"
    assert "'researcher' is over limits.agents['researcher'].rate (2/s, burst 2)" in str(info.value)
    clock.t = 0.49
    with pytest.raises(RateLimited, match=r"retry in 0\.01s"):
        tool(m, "researcher")
    clock.t = 0.5
    tool(m, "researcher")  # one token back
    with pytest.raises(RateLimited):
        tool(m, "researcher")
    tool(m, "writer")  # every agent has its own bucket


def test_burst_allows_calls_at_once_and_caps_the_refill() -> None:
    clock = FakeClock()
    m = monitor("limits: {agents: {'r*': {rate: 1/s, burst: 5}}}", clock=clock)
    for _ in range(5):
        tool(m, "r1")
    with pytest.raises(RateLimited, match="burst 5"):
        tool(m, "r1")
    clock.t = 1000.0  # a long pause refills to the burst, not beyond
    for _ in range(5):
        tool(m, "r1")
    with pytest.raises(RateLimited):
        tool(m, "r1")


def test_rates_per_minute_and_bare_numbers() -> None:
    assert per_second("30/min") == 0.5
    assert per_second("7200/h") == 2.0
    assert per_second("86400/day") == 1.0
    m = monitor("limits: {agents: {a: {rate: 3}, b: {rate: 60/min}}}")
    assert m.policy.limits.agents["a"].rate == "3/s"
    for _ in range(3):
        tool(m, "a")
    with pytest.raises(RateLimited, match=r"\(3/s, burst 3\)"):
        tool(m, "a")
    tool(m, "b")
    with pytest.raises(RateLimited, match=r"60/min, burst 1\); retry in 1\.00s"):
        tool(m, "b")


def test_budget_per_run_is_spent_for_good() -> None:
    clock = FakeClock()
    m = monitor("limits: {agents: {researcher: {budget: 3}}}", clock=clock)
    for _ in range(3):
        tool(m, "researcher")
    clock.t = 1e9
    with pytest.raises(BudgetExhausted, match=r"spent all 3 calls .*\(per run\)") as info:
        message(m, "researcher")  # an agent's budget counts messages and tool calls
    assert isinstance(info.value, RateLimited)
    assert info.value.decision.rule == "limits.agents['researcher'].budget"


def test_budget_per_window_renews() -> None:
    clock = FakeClock()
    m = monitor("limits: {agents: {a: {budget: 2, budget_window_s: 10}}}", clock=clock)
    tool(m, "a")
    clock.t = 4.0
    tool(m, "a")
    with pytest.raises(BudgetExhausted, match=r"per 10s; it renews in 6s"):
        tool(m, "a")
    clock.t = 10.0
    tool(m, "a")
    tool(m, "a")
    with pytest.raises(BudgetExhausted):
        tool(m, "a")


def test_tool_limits_are_per_agent_and_tool_glob() -> None:
    m = monitor(
        """
        limits:
          tools:
            mail.send: {rate: 1/s, budget: 3}
            "docs.*": {budget: 1}
        """
    )
    tool(m, "a", "mail.send")
    with pytest.raises(RateLimited) as info:
        tool(m, "a", "mail.send")
    assert info.value.decision.rule == "limits.tools['mail.send'].rate"
    tool(m, "a", "mail.read")  # another tool: not limited
    tool(m, "b", "mail.send")  # another agent: its own bucket
    tool(m, "a", "docs.read")
    with pytest.raises(BudgetExhausted, match=r"limits.tools\['docs\.\*'\]\.budget"):
        tool(m, "a", "docs.search")  # one budget for the whole glob
    message(m, "a")  # tool limits leave messages alone


def test_message_limits_are_per_sender() -> None:
    m = monitor("limits: {messages: {'user:*': {rate: 1/s}}}")
    message(m, "user:alice")
    with pytest.raises(RateLimited, match=r"limits.messages\['user:\*'\].rate") as info:
        message(m, "user:alice")
    assert "message from 'user:alice'" in str(info.value)
    message(m, "user:bob")
    message(m, "user")  # the glob does not match the driver
    tool(m, "user:alice")  # message limits leave tool calls alone


def test_every_matching_limit_applies_and_a_refusal_takes_nothing() -> None:
    m = monitor(
        """
        limits:
          agents: {a: {budget: 2}}
          tools: {mail.send: {budget: 1}}
        """
    )
    tool(m, "a", "mail.send")
    with pytest.raises(BudgetExhausted, match=r"limits\.tools"):
        tool(m, "a", "mail.send")  # refused: the agent's budget is not charged for it
    tool(m, "a", "mail.read")
    with pytest.raises(BudgetExhausted, match=r"limits\.agents"):
        tool(m, "a", "mail.read")


def test_grants_come_first_and_a_refused_call_spends_nothing() -> None:
    m = monitor("limits: {agents: {a: {rate: 1/s}}}")
    with pytest.raises(ToolCallBlocked) as info:
        tool(m, "a", "shell.run")  # not granted: refused by the grant, not by a limit
    assert info.value.decision.rule == "default"
    tool(m, "a")  # the bucket is still full


def test_threads_share_one_budget_exactly() -> None:
    m = monitor("limits: {agents: {a: {budget: 100}}}")
    allowed: list[int] = []

    def work() -> None:
        n = sum(m.vet_tool_call("a", "mail.send", "{}").verdict == "allow" for _ in range(50))
        allowed.append(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


# --- the circuit breaker ---------------------------------------------------------------------

BREAKER = "limits: {breaker: {violations: 3, window_s: 60}}"


def test_breaker_opens_after_out_of_grant_calls_and_refuses_everything() -> None:
    m = monitor(BREAKER)
    for i in range(3):
        with pytest.raises(ToolCallBlocked) as info:
            tool(m, "rogue", "shell.run")
        assert ("circuit breaker of 'rogue' is now open" in str(info.value)) == (i == 2)
    with pytest.raises(CircuitOpen) as opened:
        tool(m, "rogue", "mail.send")  # granted, but the breaker is open
    text = str(opened.value)
    assert opened.value.decision.rule == "limits.breaker"
    assert "3 violation(s) within 60s: tool 'shell.run' outside its grant" in text
    assert "until Mesh.reset_breaker('rogue')" in text
    with pytest.raises(CircuitOpen, match="message from 'rogue'"):
        message(m, "rogue")
    with pytest.raises(ToolCallBlocked, match="circuit breaker of 'rogue' is open"):
        tool(m, "rogue", "shell.run")  # still the grant's refusal, with the breaker noted
    tool(m, "writer", "mail.send")  # other agents are unaffected
    message(m, "writer")
    [status] = m.breakers()
    assert status.agent == "rogue" and status.open and status.violations == 3
    assert "shell.run" in status.cause and status.closes_in_s is None
    assert [d.rule for d in m.decisions()].count("limits.breaker") == 2
    assert m.reset_breaker("rogue") is True
    tool(m, "rogue", "mail.send")
    message(m, "rogue")
    assert m.breakers() == []
    assert m.reset_breaker("rogue") is False  # nothing was open


def test_breaker_counts_message_rule_refusals_and_limit_hits() -> None:
    policy = Policy.from_yaml(
        textwrap.dedent(
            """
            name: mixed
            messages: [{from: [user], to: ["*"]}]
            tools: {a: [mail.send]}
            limits:
              agents: {a: {rate: 1/s}}
              breaker: {violations: 3}
            """
        )
    )
    m = SecurityMonitor(policy, clock=FakeClock())
    with pytest.raises(MessageBlocked):
        message(m, "a")  # no message rule for "a": violation 1
    tool(m, "a")
    with pytest.raises(RateLimited):
        tool(m, "a")  # violation 2
    with pytest.raises(RateLimited, match="now open"):
        tool(m, "a")  # violation 3
    with pytest.raises(CircuitOpen, match=r"tool 'mail.send' over limits.agents\['a'\].rate"):
        tool(m, "a")
    [status] = m.breakers()
    assert status.open


def test_violations_outside_the_window_do_not_add_up() -> None:
    clock = FakeClock()
    m = monitor(BREAKER, clock=clock)
    for t in (0.0, 30.0, 61.0, 91.0):  # never three within 60s
        clock.t = t
        with pytest.raises(ToolCallBlocked):
            tool(m, "a", "shell.run")
    [status] = m.breakers()
    assert not status.open and status.violations == 2
    tool(m, "a")
    clock.t = 200.0
    assert m.breakers() == []  # the old violations aged out


def test_breaker_closes_by_itself_after_reset_after_s() -> None:
    clock = FakeClock()
    m = monitor("limits: {breaker: {violations: 1, reset_after_s: 30}}", clock=clock)
    with pytest.raises(ToolCallBlocked, match="now open"):
        tool(m, "a", "shell.run")
    clock.t = 10.0
    with pytest.raises(CircuitOpen, match="or for 20s more"):
        tool(m, "a")
    [status] = m.breakers()
    assert status.closes_in_s == 20.0
    clock.t = 30.0
    tool(m, "a")
    assert m.breakers() == []


def test_no_breaker_configured_means_no_breaker() -> None:
    m = monitor("limits: {agents: {a: {rate: 1/s}}}")
    for _ in range(10):
        with pytest.raises(ToolCallBlocked):
            tool(m, "a", "shell.run")
    tool(m, "a")
    assert m.breakers() == []


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ("{agents: {a: {rate: -5/s}}}", r"limits\.agents\.a\.rate: rate '-5/s' must be a positive"),
        ("{agents: {a: {rate: 5/fortnight}}}", r"'5/fortnight' must be .* per s, min, h or day"),
        ("{agents: {a: {rate: 0/s}}}", r"rate '0/s' must be a positive"),
        ("{agents: {a: {rate: -2}}}", r"rate '-2/s' must be a positive"),
        ("{agents: {a: {rate: 5/s, brust: 2}}}", r"limits\.agents\.a\.brust: unknown key"),
        ("{agent: {a: {rate: 5/s}}}", r"limits\.agent: unknown key"),
        ("{agents: {a: {}}}", r"a limit needs a rate, a budget, or both"),
        ("{agents: {a: {budget: 3, burst: 2}}}", r"burst needs a rate"),
        ("{agents: {a: {rate: 1/s, budget_window_s: 5}}}", r"budget_window_s needs a budget"),
        ("{agents: {a: {budget: -1}}}", r"budget: Input should be greater than or equal to 0"),
        ("{tools: {mail: {budget: 1}}}", r"tool glob 'mail' must look like 'server.tool'"),
        ("{breaker: {violations: 0}}", r"breaker\.violations: Input should be greater than"),
        ("{breaker: {window_s: 60, reset_after: 5}}", r"breaker\.reset_after: unknown key"),
    ],
)
def test_bad_limits_are_policy_errors(limits: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=expected) as info:
        Policy.from_yaml(f"name: bad\nlimits: {limits}\n", source="bad.yaml")
    assert "invalid security policy bad.yaml" in str(info.value)


def test_packs_without_limits_load_unchanged() -> None:
    for source in ("default", "demo", POLICY, *map(str, Path(POLICY).parent.glob("*.yaml"))):
        assert load_policy(source).limits == LimitsPolicy()
    assert Policy.from_yaml("name: x\nlimits:\n").limits == LimitsPolicy()
    assert Policy.from_yaml("name: x\nlimits: {breaker: {}}\n").limits.breaker is not None


def test_documented_example_parses() -> None:
    default_yaml = importlib.resources.files("agentmesh.policies") / "default.yaml"
    lines = default_yaml.read_text().split("\nlimits:", 1)[1].splitlines()
    example = [line.removeprefix("  # ") for line in lines if line.startswith("  # ")]
    start = next(i for i, line in enumerate(example) if line.startswith("agents:"))
    body = textwrap.indent("\n".join(example[start:]), "  ")
    limits = Policy.from_yaml(f"name: doc\nlimits:\n{body}\n").limits
    assert limits.agents and limits.tools and limits.breaker is not None
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    [block] = re.findall(r"```yaml\n(  limits:.*?)```", readme, flags=re.S)
    readme_limits = Policy.from_yaml("name: readme\n" + textwrap.dedent(block)).limits
    assert readme_limits.agents["researcher*"].budget == 200


# --- pickling and errors ---------------------------------------------------------------------


def test_monitor_with_limits_survives_pickle() -> None:
    clock = OtherProcessClock(0.0)
    m = monitor(
        "limits: {agents: {a: {budget: 2}}, breaker: {violations: 1, reset_after_s: 30}}",
        clock=clock,
    )
    tool(m, "a")
    with pytest.raises(ToolCallBlocked):
        tool(m, "b", "shell.run")  # opens b's breaker at t=0
    clock.t = 5.0
    copy = pickle.loads(pickle.dumps(m))  # its clock reads 1_000_005 now
    with pytest.raises(CircuitOpen, match="or for 25s more"):  # ages kept, not clock values
        tool(copy, "b")
    tool(copy, "a")  # one call of the budget left
    with pytest.raises(BudgetExhausted):
        tool(copy, "a")
    assert copy.reset_breaker("b") is True
    tool(copy, "b")
    with pytest.raises(CircuitOpen):
        tool(m, "b")  # the original is its own monitor
    tool(m, "a")


def test_limit_errors_survive_pickle_and_name_no_content() -> None:
    m = monitor(BREAKER)
    for _ in range(3):
        with pytest.raises(ToolCallBlocked):
            tool(m, "rogue", "shell.run")
    with pytest.raises(CircuitOpen) as info:
        tool(m, "rogue")
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, CircuitOpen) and isinstance(copy, SecurityDenied)
    assert copy.decision == info.value.decision
    assert outside_text(copy).startswith("CircuitOpen: refused by the security actor: block")


# --- through a mesh --------------------------------------------------------------------------


class Rogue(Agent):
    """Does whatever its (hijacked) instructions say."""

    name = "rogue"
    resources = Resources(num_cpus=0.1)

    @skill
    async def call_tool(self, tool: str, args: dict[str, JsonValue]) -> str:
        """Call an MCP tool and return its text."""
        return (await self.use_tool(tool, **args)).text

    @skill
    async def ask(self, agent: str, skill: str, text: str) -> str:
        """Ask another agent's skill."""
        return str(await self.call(agent, skill, text=text))


MESH_POLICY = """
name: limits-mesh
messages:
  - {from: [user, rogue], to: ["*"]}
tools:
  rogue: [flaky.echo]
limits:
  breaker: {violations: 3, window_s: 60}
"""


async def test_hijacked_agent_is_circuit_broken_until_reset(ray_session: None) -> None:
    policy = Policy.from_yaml(MESH_POLICY)
    async with Mesh([Rogue, Left], tools=[FLAKY], policy=policy) as mesh:
        echo: dict[str, JsonValue] = {"text": "hi"}
        assert await mesh.call("rogue", "call_tool", tool="flaky.echo", args=echo) == "hi"
        for _ in range(3):  # the hijack: a tool outside its grant, again and again
            with pytest.raises(ToolCallBlocked, match="no tool grant gives 'rogue'"):
                await mesh.call("rogue", "call_tool", tool="flaky.die", args={})
        with pytest.raises(CircuitOpen) as info:
            await mesh.call("rogue", "call_tool", tool="flaky.echo", args=echo)
        assert info.value.decision.rule == "limits.breaker"
        assert "tool 'flaky.die' outside its grant" in info.value.decision.reason
        with pytest.raises(CircuitOpen, match=r"message from 'rogue' to 'left\.echo'"):
            await mesh.call("rogue", "ask", agent="left", skill="echo", text="hi")
        assert await mesh.call("left", "echo", text="still fine") == "still fine"
        assert any(d.rule == "limits.breaker" for d in await mesh.decisions())
        with pytest.raises(UnknownAgentError):
            await mesh.reset_breaker("nobody")
        assert await mesh.reset_breaker("rogue") is True
        assert await mesh.call("rogue", "call_tool", tool="flaky.echo", args=echo) == "hi"
        assert await mesh.call("rogue", "ask", agent="left", skill="echo", text="ok") == "ok"
        assert await mesh.reset_breaker("rogue") is False

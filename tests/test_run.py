"""Running plans on the mesh: parallel branches, data flow, failures and retries."""

from __future__ import annotations

import pytest

from agentmesh import (
    Mesh,
    ModelPlanner,
    NodeStatus,
    Plan,
    PlanStep,
    PlanValidationError,
    RunFailedError,
)
from agentmesh.planner import TemplatePlanner


def fixed(*steps: PlanStep, output: str | None = None) -> TemplatePlanner:
    return TemplatePlanner(lambda goal: Plan(goal=goal, steps=list(steps), output=output))


async def test_sibling_branches_overlap_and_results_flow_downstream(mesh: Mesh) -> None:
    planner = fixed(
        PlanStep(id="l", agent="left", skill="sleep", args={"seconds": 1.0}),
        PlanStep(id="r", agent="right", skill="sleep", args={"seconds": 1.0}),
        PlanStep(id="join", agent="joiner", skill="overlap", inputs={"a": "l", "b": "r"}),
    )
    result = await mesh.run("parallel", planner=planner)
    left, right, join = result.node("l"), result.node("r"), result.node("join")
    assert all(n.status is NodeStatus.SUCCEEDED for n in (left, right, join))
    assert left.started_at and left.ended_at and right.started_at and right.ended_at
    # the agents' own records of when they ran: the two branches overlap in time
    assert max(left.started_at, right.started_at) < min(left.ended_at, right.ended_at)
    assert result.output == join.output and isinstance(result.output, float)
    assert result.output > 0  # computed by the joiner from the branches' outputs
    assert join.started_at >= max(left.ended_at, right.ended_at)
    assert {(n.agent, n.attempts) for n in result.nodes} == {
        ("left", 1),
        ("right", 1),
        ("joiner", 1),
    }


async def test_path_inputs_pick_fields_of_upstream_results(mesh: Mesh) -> None:
    planner = fixed(
        PlanStep(id="l", agent="left", skill="sleep", args={"seconds": 0.0}),
        PlanStep(id="e", agent="left", skill="echo", inputs={"text": "l.start"}),
    )
    with pytest.raises(RunFailedError) as info:  # a float is not a str: the skill rejects it
        await mesh.run("paths", planner=planner)
    assert info.value.result.node("e").error.type == "SkillInputError"
    assert info.value.result.node("l").status is NodeStatus.SUCCEEDED


async def test_failed_node_skips_descendants_keeps_siblings(mesh: Mesh) -> None:
    planner = fixed(
        PlanStep(id="bad", agent="joiner", skill="flaky", args={"key": "never", "failures": 99}),
        PlanStep(id="after", agent="left", skill="echo", inputs={"text": "bad"}),
        PlanStep(id="ok", agent="left", skill="echo", args={"text": "still runs"}),
    )
    with pytest.raises(RunFailedError) as info:
        await mesh.run("failure", planner=planner)
    result = info.value.result
    assert not result.succeeded
    assert result.node("bad").status is NodeStatus.FAILED
    assert result.node("bad").error.type == "SkillFailedError"
    assert result.node("after").status is NodeStatus.SKIPPED
    assert result.node("ok").status is NodeStatus.SUCCEEDED
    assert result.node("ok").output == "still runs"


async def test_run_failures_are_retried(mesh: Mesh) -> None:
    planner = fixed(
        PlanStep(id="f", agent="joiner", skill="flaky", args={"key": "twice", "failures": 2})
    )
    result = await mesh.run("retry", planner=planner, max_retries=2)
    assert result.node("f").attempts == 3 and result.output == 3


async def test_invalid_template_plan_runs_nothing(mesh: Mesh) -> None:
    planner = fixed(PlanStep(id="x", agent="left", skill="nope"))
    with pytest.raises(PlanValidationError, match="no skill 'nope'"):
        await mesh.run("bad", planner=planner)


async def test_model_plan_through_the_mesh(mesh: Mesh) -> None:
    """The planner's model runs in the mesh's model service; its bad plan is sent back."""
    result = await mesh.run("say planned", planner=ModelPlanner("planner", max_attempts=2))
    assert result.output == "planned"
    handle = mesh.model_handle("planner")
    calls = await handle.calls.remote()
    assert len(calls) == 2 and "has no skill 'jump'" in calls[1].prompt
    assert "left" in calls[0].prompt and "echo" in calls[0].prompt  # the catalog was offered
    await handle.assert_consumed.remote()

"""Re-planning: a node that fails for good gets the planner to revise what remains of the goal.

A real mesh (tests/durable_mesh.py's worker, whose every effect is a line written by a
sandboxed stdio MCP server) runs plans whose step ``b`` fails for good (it requires a file that
is missing; RuntimeError is not in the default retry policy). The revised plan is validated
like any plan, recorded next to the original (``RunResult.revisions`` and the run store), and
the succeeded steps it repeats exactly are not run again (their effects are counted).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentmesh import (
    ConfigError,
    Mesh,
    ModelPlanner,
    NodeStatus,
    Plan,
    PlanStep,
    RunFailedError,
    RunResult,
    RunState,
    ScriptedModel,
    SqliteRunStore,
)
from agentmesh.planner import Replanner, TemplatePlanner

from .durable_mesh import POLICY, Worker, effects, effects_server

MISSING = "/nonexistent/agentmesh-replan-gate"


def act(step_id: str, entry: str, *, after: str | None = None, **args: object) -> PlanStep:
    return PlanStep(
        id=step_id,
        agent="worker",
        skill="act",
        args={"entry": entry, **args},
        inputs={"after": after} if after else {},
    )


def failing_plan(goal: str, tag: str) -> Plan:
    """a -> b (fails for good) -> c, and d beside them."""
    return Plan(
        goal=goal,
        steps=[
            act("a", f"{tag}-a"),
            act("b", f"{tag}-b", after="a", require=MISSING),
            act("c", f"{tag}-c", after="b"),
            act("d", f"{tag}-d"),
        ],
        output="c",
    )


def revised_plan(goal: str, tag: str) -> Plan:
    """a and d as they were (kept), b replaced by b2, c fed by b2 (so it changed)."""
    return Plan(
        goal=goal,
        steps=[
            act("a", f"{tag}-a"),
            act("b2", f"{tag}-b2", after="a"),
            act("c", f"{tag}-c", after="b2"),
            act("d", f"{tag}-d"),
        ],
        output="c",
    )


MODEL_TAG = "model"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replan")


@pytest.fixture(scope="module")
async def mesh(ray_session: None, folder: Path) -> AsyncIterator[Mesh]:
    revised = revised_plan("model goal", MODEL_TAG).model_dump_json()
    model = ScriptedModel(
        [failing_plan("model goal", MODEL_TAG).model_dump_json(), "no idea", revised]
    )
    async with Mesh(
        [Worker],
        tools=[effects_server(folder / "effects")],
        policy=POLICY,
        models={"planner": model},
        run_store=SqliteRunStore(folder / "runs.db"),
    ) as started:
        yield started


def count(folder: Path, entry: str) -> int:
    return sum(e["entry"] == entry for e in effects(folder / "effects"))


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_a_failed_node_is_replanned_and_the_kept_steps_do_not_run_again(
    mesh: Mesh, folder: Path
) -> None:
    t = tag()
    seen: list[RunResult] = []

    def revise(failed: RunResult) -> Plan:
        seen.append(failed)
        return revised_plan(failed.goal, t)

    planner = TemplatePlanner(lambda goal: failing_plan(goal, t), revise=revise)
    assert isinstance(planner, Replanner)
    result = await mesh.run("replan me", planner=planner)

    assert result.succeeded
    assert result.output == f"recorded {t}-a recorded {t}-b2 recorded {t}-c"
    assert [s.id for s in result.plan.steps] == ["a", "b2", "c", "d"]
    # the replaced plan is recorded next to the one that ran, with how its nodes ended
    [revision] = result.revisions
    assert revision.plan == failing_plan("replan me", t)
    ended = {n.step_id: n.status for n in revision.nodes}
    assert ended == {
        "a": NodeStatus.SUCCEEDED,
        "b": NodeStatus.FAILED,
        "c": NodeStatus.SKIPPED,
        "d": NodeStatus.SUCCEEDED,
    }
    assert "is missing" in revision.nodes[1].error.message  # type: ignore[union-attr]
    # the planner saw the failed run, with its error
    assert seen[0].node("b").error is not None and seen[0].node("b").status is NodeStatus.FAILED
    # a and d were kept (one effect each); b ran once, b2 and c once
    assert [count(folder, f"{t}-{x}") for x in "abcd"] == [1, 1, 1, 1]
    assert count(folder, f"{t}-b2") == 1
    assert result.node("a").attempts == 1 and result.node("a").task_id == revision.nodes[0].task_id
    # the run store holds the plan in force and the one it replaced
    info = SqliteRunStore(folder / "runs.db").get_run(result.run_id)
    assert info.state is RunState.SUCCEEDED
    assert info.plan == result.plan
    assert info.revisions == result.revisions
    assert {n.step_id: n.status for n in info.nodes} == dict.fromkeys(
        ["a", "b2", "c", "d"], NodeStatus.SUCCEEDED
    )


async def test_a_planner_that_cannot_revise_fails_the_run_as_it_was(mesh: Mesh) -> None:
    t = tag()
    calls: list[str] = []

    def give_up(failed: RunResult) -> None:
        calls.append(failed.run_id)

    with pytest.raises(RunFailedError) as info:
        await mesh.run("x", planner=TemplatePlanner(lambda g: failing_plan(g, t), revise=give_up))
    assert len(calls) == 1
    assert info.value.result is not None and info.value.result.revisions == []
    assert "re-planning" not in str(info.value)
    # a plain template planner (no revise) does not re-plan at all
    with pytest.raises(RunFailedError):
        await mesh.run("x", planner=TemplatePlanner(lambda g: failing_plan(g, tag())))


async def test_an_invalid_revision_fails_the_run_with_the_reason(mesh: Mesh, folder: Path) -> None:
    t = tag()

    def bad(failed: RunResult) -> Plan:
        return Plan(goal=failed.goal, steps=[PlanStep(id="x", agent="worker", skill="fly")])

    with pytest.raises(RunFailedError) as info:
        await mesh.run("x", planner=TemplatePlanner(lambda g: failing_plan(g, t), revise=bad))
    assert "re-planning failed" in str(info.value) and "fly" in str(info.value)
    result = info.value.result
    assert result is not None and result.node("b").status is NodeStatus.FAILED
    stored = SqliteRunStore(folder / "runs.db").get_run(result.run_id)
    assert stored.state is RunState.FAILED and stored.revisions == []
    assert stored.plan == failing_plan("x", t)


async def test_replans_are_bounded(mesh: Mesh) -> None:
    revisions: list[int] = []

    def again(failed: RunResult) -> Plan:
        revisions.append(len(failed.revisions))
        return failing_plan(failed.goal, tag())  # fails again every time

    planner = TemplatePlanner(lambda g: failing_plan(g, tag()), revise=again)
    with pytest.raises(RunFailedError) as info:
        await mesh.run("loop", planner=planner, max_replans=2)
    assert revisions == [0, 1]  # each revision sees the ones before it
    assert info.value.result is not None and len(info.value.result.revisions) == 2
    revisions.clear()
    with pytest.raises(RunFailedError):
        await mesh.run("loop", planner=planner, max_replans=0)
    assert revisions == []
    with pytest.raises(ConfigError, match="max_replans"):
        await mesh.run("loop", planner=planner, max_replans=-1)


async def test_a_model_planner_revises_from_the_failure_it_is_shown(
    mesh: Mesh, folder: Path
) -> None:
    result = await mesh.run("model goal", planner=ModelPlanner("planner", max_attempts=2))
    assert result.succeeded and len(result.revisions) == 1
    m = MODEL_TAG
    assert result.output == f"recorded {m}-a recorded {m}-b2 recorded {m}-c"
    model_calls = await mesh.model_handle("planner").calls.remote()
    assert len(model_calls) == 3  # the plan, then a rejected revision and the good one
    prompt = model_calls[1].prompt
    assert "A plan for this goal failed" in prompt
    assert "- b: FAILED for good: SkillFailedError" in prompt and "is missing" in prompt
    assert f"- a: succeeded, output {json.dumps(f'recorded {m}-a')}" in prompt
    assert "not valid JSON" in model_calls[2].prompt  # the revision is re-prompted as a plan is
    assert count(folder, f"{MODEL_TAG}-a") == 1

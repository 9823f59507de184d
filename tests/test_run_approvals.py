"""Approval points in a run: a node, or one tool call, waits for a human; the run pauses in the
run store, outlives its driver, and resumes on a yes or fails cleanly on a no.

The plan (tests/durable_mesh.py's ``approval_plan``): a; b asks "Ship b?" first; c is fed by
b; d is fed untrusted data (a read-only tool's result), so its side-effecting call waits for
approval under the policy's ``untrusted_arguments: approve``. Every effect is a line written by
a real sandboxed MCP server, counted by the tests. "A new driver" is a new Mesh (new actors:
the paused tasks are gone) on the same run store; the last test uses a new process and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from a2a.types import Message

from agentmesh import (
    Mesh,
    NoApprovalPendingError,
    NodeStatus,
    Plan,
    RunFailedError,
    RunPaused,
    RunResult,
    RunState,
    SqliteRunStore,
)
from agentmesh._private.task_scope import request_scope, stamp_call
from agentmesh.planner import TemplatePlanner

from .durable_mesh import EFFECTS_ENV, approval_plan, build_approval_mesh, effects

ROOT = Path(__file__).parent.parent
CLI = str(Path(sys.executable).parent / "agentmesh")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("approvals")
    return base / "effects", base / "runs.db"


def new_mesh(folders: tuple[Path, Path]) -> Mesh:
    folder, db = folders
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(EFFECTS_ENV, str(folder))
        mesh = build_approval_mesh()
    mesh.run_store = SqliteRunStore(db)
    return mesh


@pytest.fixture
async def driver(ray_session: None, folders: tuple[Path, Path]) -> AsyncIterator[Mesh]:
    async with new_mesh(folders) as mesh:
        yield mesh


def counts(folder: Path, goal: str) -> dict[str, int]:
    seen = Counter(e["entry"] for e in effects(folder))
    return {step: seen[f"{goal}-{step}"] for step in "abcpd"}


async def pause(mesh: Mesh, goal: str, planner: TemplatePlanner | None = None) -> RunResult:
    with pytest.raises(RunPaused) as info:
        await mesh.run(goal, planner=planner or TemplatePlanner(approval_plan))
    assert isinstance(info.value.result, RunResult)
    return info.value.result


async def test_the_run_pauses_and_a_new_driver_finishes_it_on_yes(
    driver: Mesh, folders: tuple[Path, Path]
) -> None:
    folder, db = folders
    goal = f"yes-{uuid.uuid4().hex[:6]}"
    paused = await pause(driver, goal)
    status = {n.step_id: n.status for n in paused.nodes}
    assert status == {
        "a": NodeStatus.SUCCEEDED,
        "b": NodeStatus.WAITING,
        "c": NodeStatus.PENDING,
        "p": NodeStatus.SUCCEEDED,
        "d": NodeStatus.WAITING,
    }
    [asked_b] = paused.node("b").approvals
    assert (asked_b.question, asked_b.key, asked_b.answer) == ("Ship b?", None, None)
    [asked_d] = paused.node("d").approvals
    assert asked_d.tool == "effects.record" and asked_d.key is not None
    assert asked_d.question.startswith("Approve the call of tool 'effects.record'")
    assert paused.node("d").error is None and paused.node("d").errors == []
    assert paused.node("d").gave_up is None
    # nothing waiting was done: b never ran, d's effect was refused before the server
    assert counts(folder, goal) == {"a": 1, "b": 0, "c": 0, "p": 0, "d": 0}
    store = SqliteRunStore(db)
    assert store.get_run(paused.run_id).state is RunState.PAUSED
    await driver.close()  # the driver goes away; its agents' waiting tasks with it

    async with new_mesh(folders) as again:
        with pytest.raises(RunPaused) as still:  # d still waits
            await again.approve_run(paused.run_id, "b", approve=True)
        assert still.value.result.node("c").status is NodeStatus.SUCCEEDED
        assert counts(folder, goal) == {"a": 1, "b": 1, "c": 1, "p": 0, "d": 0}
        done = await again.approve_run(paused.run_id, "d", approve=True)
        assert (
            done.succeeded
            and done.output == f"recorded {goal}-a recorded {goal}-b recorded {goal}-c"
        )
        assert counts(folder, goal) == {"a": 1, "b": 1, "c": 1, "p": 0, "d": 1}
        [answered] = done.node("d").approvals
        assert (answered.answer, answered.answered_by) == (True, "user")
        assert answered.answered_at is not None
        assert store.get_run(paused.run_id).state is RunState.SUCCEEDED
        with pytest.raises(NoApprovalPendingError):
            await again.approve_run(paused.run_id, "d", approve=True)


async def test_a_no_fails_the_node_cleanly_and_is_not_replanned(
    driver: Mesh, folders: tuple[Path, Path]
) -> None:
    folder, db = folders
    goal = f"no-{uuid.uuid4().hex[:6]}"
    revised: list[str] = []

    def revise(failed: RunResult) -> Plan:
        revised.append(failed.run_id)
        return approval_plan(failed.goal)

    planner = TemplatePlanner(approval_plan, revise=revise)
    paused = await pause(driver, goal, planner)
    with pytest.raises(NoApprovalPendingError):
        await driver.approve_run(paused.run_id, "c", approve=True)  # c asks nothing
    with pytest.raises(RunFailedError) as info:
        await driver.approve_run(paused.run_id, "b", approve=False, planner=planner)
    result = info.value.result
    assert result.node("b").status is NodeStatus.FAILED
    assert result.node("b").error.type == "ApprovalDenied"  # type: ignore[union-attr]
    assert "did not approve: Ship b?" in result.node("b").error.message  # type: ignore[union-attr]
    assert result.node("c").status is NodeStatus.SKIPPED
    assert result.node("d").status is NodeStatus.WAITING  # its own question is still open
    assert revised == []  # a human's no is not re-planned
    assert counts(folder, goal) == {"a": 1, "b": 0, "c": 0, "p": 0, "d": 0}
    assert SqliteRunStore(db).get_run(paused.run_id).state is RunState.FAILED
    # d can still be answered; b stays denied
    with pytest.raises(RunFailedError) as again:
        await driver.approve_run(paused.run_id, "d", approve=True)
    assert again.value.result.node("d").status is NodeStatus.SUCCEEDED
    assert again.value.result.node("b").error.type == "ApprovalDenied"
    assert counts(folder, goal) == {"a": 1, "b": 0, "c": 0, "p": 0, "d": 1}
    # the flight recording has the questions asked and the human's answers
    events = driver.events(paused.run_id)
    [asked] = [e.body for e in events if e.node == "b" and e.body.kind == "node"
               and e.body.status is NodeStatus.WAITING]  # fmt: skip
    assert [a.question for a in asked.approvals] == ["Ship b?"]  # type: ignore[union-attr]
    answers = [(e.node, e.agent, e.body.answer) for e in events if e.body.kind == "approval"]  # type: ignore[union-attr]
    assert answers == [("b", "user", False), ("d", "user", True)]


def test_only_the_driver_can_bring_approvals() -> None:
    message = Message(message_id="m")
    stamp_call(message, label=None, grant=None, approvals=["effects.record:abc"])
    assert request_scope(message, "user").approvals["effects.record:abc"] == 1
    assert request_scope(message, "writer").approvals["effects.record:abc"] == 0
    assert request_scope(message, "user:bo").approvals["effects.record:abc"] == 0


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400
    )


def test_a_paused_run_outlives_its_driver_process_and_the_cli_approves_it(
    tmp_path: Path,
) -> None:
    folder, db = tmp_path / "effects", tmp_path / "state" / "runs.db"
    env = {**os.environ, "AGENTMESH_STATE_DIR": str(db.parent), EFFECTS_ENV: str(folder)}
    env.pop("RAY_ADDRESS", None)
    run_id = "paused-run"
    driver = subprocess.run(
        [sys.executable, "-m", "tests.durable_mesh", "--pause", run_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    assert "waits for approval (b: Ship b?; d: Approve the call" in driver.stdout
    listed = _cli(env, "runs", "--json", "--store", str(db))
    [run] = [r for r in json.loads(listed.stdout) if r["run_id"] == run_id]
    assert (run["state"], run["nodes_done"], run["nodes_total"]) == ("paused", 2, 5)

    first = _cli(env, "approve", run_id, "b", "--store", str(db))
    assert first.returncode == 3, first.stdout[-3000:] + first.stderr[-3000:]
    assert "paused:" in first.stdout and "d: Approve the call" in first.stdout
    second = _cli(env, "approve", run_id, "d", "--store", str(db))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "recorded approve-a recorded approve-b recorded approve-c" in second.stdout
    assert counts(folder, "approve") == {"a": 1, "b": 1, "c": 1, "p": 0, "d": 1}
    listed = _cli(env, "runs", "--json", "--store", str(db))
    [run] = [r for r in json.loads(listed.stdout) if r["run_id"] == run_id]
    assert run["state"] == "succeeded"
    again = _cli(env, "approve", run_id, "d", "--store", str(db))
    assert again.returncode == 1 and "RunFinishedError" in again.stdout

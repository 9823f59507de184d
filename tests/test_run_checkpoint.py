"""Group commit of node checkpoints: each transition is stored before ``node()`` returns, and
the transitions that arrive while a commit is under way share the next one (real SQLite)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agentmesh import (
    NodeCheckpoint,
    NodeRecord,
    NodeStatus,
    Plan,
    PlanStep,
    RunInfo,
    RunState,
    RunStoreError,
    SqliteRunStore,
)
from agentmesh._private.run_checkpoint import RunCheckpointer

PLAN = Plan(
    goal="wide",
    steps=[PlanStep(id=f"n{i}", agent="a", skill="s", args={"i": i}) for i in range(50)],
)


class SlowStore(SqliteRunStore):
    """SQLite, counting commits; the first one takes a while, so others queue behind it."""

    def __init__(self, path: Path, *, fail: bool = False) -> None:
        super().__init__(path)
        self.commits: list[list[str]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def save_nodes(self, run_id: str, nodes: Sequence[NodeCheckpoint]) -> None:
        with self._lock:
            first = not self.commits
            self.commits.append([n.step_id for n in nodes])
        if first:
            time.sleep(0.2)
        if self.fail:
            raise RunStoreError("the disk is full")
        super().save_nodes(run_id, nodes)


def new_run(store: SqliteRunStore, run_id: str) -> None:
    now = time.time()
    store.create_run(
        RunInfo(
            run_id=run_id,
            goal="wide",
            plan=PLAN,
            state=RunState.RUNNING,
            created_at=now,
            updated_at=now,
        )
    )


def record(i: int, status: NodeStatus) -> NodeRecord:
    return NodeRecord(step_id=f"n{i}", agent="a", skill="s", status=status, output=i)


async def test_transitions_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "runs.db")
    new_run(store, "r")
    checkpoint = RunCheckpointer(store, "r", PLAN, kept=[])
    first = asyncio.create_task(checkpoint.node(record(0, NodeStatus.RUNNING)))
    await asyncio.sleep(0.05)  # the first commit is under way
    # every other node starts and then succeeds while it runs: one more commit holds them all
    await asyncio.gather(
        first,
        *(checkpoint.node(record(i, NodeStatus.RUNNING)) for i in range(1, 50)),
        *(checkpoint.node(record(i, NodeStatus.SUCCEEDED)) for i in range(1, 50)),
    )
    assert len(store.commits) == 2
    assert store.commits[0] == ["n0"] and sorted(store.commits[1]) == sorted(
        f"n{i}" for i in range(1, 50)
    )
    stored = {n.step_id: n for n in store.get_run("r").nodes}
    assert stored["n0"].status is NodeStatus.RUNNING
    assert all(stored[f"n{i}"].status is NodeStatus.SUCCEEDED for i in range(1, 50))
    assert stored["n7"].output == 7 and stored["n7"].inputs == {"i": 7}


async def test_a_failed_commit_fails_every_transition_it_held(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "runs.db", fail=True)
    new_run(store, "r")
    checkpoint = RunCheckpointer(store, "r", PLAN, kept=[])
    results = await asyncio.gather(
        *(checkpoint.node(record(i, NodeStatus.RUNNING)) for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, RunStoreError) for r in results)
    store.fail = False  # the next transition gets a commit of its own, and it holds
    await checkpoint.node(record(3, NodeStatus.SUCCEEDED))
    assert store.get_run("r").node("n3").status is NodeStatus.SUCCEEDED
    assert "n4" not in {n.step_id for n in store.get_run("r").nodes}  # never stored

"""An agent served by several actors: new tasks spread over them, a waiting task stays put."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from a2a.types import TaskState

from agentmesh import (
    Agent,
    AgentDefinitionError,
    ConfigError,
    InputRequired,
    Mesh,
    Policy,
    Resources,
    UnknownTaskError,
    skill,
)

from .test_tasks import call_message

POLICY = Policy.from_yaml("name: replicas\nmessages: [{from: [user], to: ['*']}]\n")


class Worker(Agent):
    """Says which process serves it."""

    resources = Resources(num_cpus=0.1)
    replicas = 2

    @skill
    async def where(self, pause: float = 0.0) -> int:
        """This replica's process id, after ``pause`` seconds."""
        await asyncio.sleep(pause)
        return os.getpid()

    @skill
    def ask(self, ok: bool = False) -> int:
        """Ask for ``ok`` first (naming this replica's process), then answer with it."""
        if not ok:
            raise InputRequired(f"pid {os.getpid()}: ok?", field="ok")
        return os.getpid()

    @skill
    async def wait(self, seconds: float) -> str:
        """Sleep (long enough to be cancelled)."""
        await asyncio.sleep(seconds)
        return "slept"


class Scaled(Agent):
    """One replica by its class, scaled by the mesh."""

    resources = Resources(num_cpus=0.1)

    @skill
    async def where(self, pause: float = 0.0) -> int:
        """This replica's process id, after ``pause`` seconds."""
        await asyncio.sleep(pause)
        return os.getpid()


class Gate(Agent):
    """Counts how many of its calls run at once in its process."""

    resources = Resources(num_cpus=0.1)
    max_concurrency = 1
    _lock = threading.Lock()
    _running = 0
    _most = 0

    @skill
    def hold(self, seconds: float) -> int:
        """Stay busy ``seconds`` (a sync skill: one Ray thread each); the most seen at once."""
        with self._lock:
            Gate._running += 1
            Gate._most = max(Gate._most, Gate._running)
        time.sleep(seconds)
        with self._lock:
            Gate._running -= 1
        return Gate._most


class Ungated(Gate):
    """The same, unbounded."""

    max_concurrency = None


@pytest.fixture(scope="module")
async def mesh(ray_session: None) -> AsyncIterator[Mesh]:
    async with Mesh([Worker, Scaled, Gate, Ungated], policy=POLICY, replicas={"scaled": 3}) as m:
        yield m


async def test_concurrent_tasks_spread_evenly_over_the_replicas(mesh: Mesh) -> None:
    pids = await asyncio.gather(*(mesh.call("worker", "where", pause=0.3) for _ in range(10)))
    assert sorted(Counter(pids).values()) == [5, 5]  # the least busy replica takes each task
    scaled = await asyncio.gather(*(mesh.call("scaled", "where", pause=0.3) for _ in range(9)))
    assert sorted(Counter(scaled).values()) == [3, 3, 3]  # the mesh's count wins
    assert not set(pids) & set(scaled)


async def test_an_answer_goes_to_the_replica_that_asked(mesh: Mesh) -> None:
    asked = await asyncio.gather(*(mesh.send("worker", call_message("ask", {})) for _ in range(4)))
    assert {t.status.state for t in asked} == {TaskState.TASK_STATE_INPUT_REQUIRED}
    askers = [int(t.status.message.parts[0].text.split()[1].rstrip(":")) for t in asked]
    assert len(set(askers)) == 2
    answers = await asyncio.gather(*(mesh.resume("worker", t.id, ok=True) for t in asked))
    assert answers == askers


async def test_a_running_task_is_cancelled_on_whichever_replica_runs_it(mesh: Mesh) -> None:
    ids = ["r-a", "r-b"]
    running = [
        asyncio.ensure_future(
            mesh.send("worker", call_message("wait", {"seconds": 60}), task_id=task_id)
        )
        for task_id in ids
    ]
    for task_id in ids:  # the two run on different replicas; the router need not know which
        for _ in range(200):
            try:
                await mesh.cancel("worker", task_id)
                break
            except UnknownTaskError:  # not started yet
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{task_id} never started")
    tasks = await asyncio.wait_for(asyncio.gather(*running), timeout=10)
    assert [t.status.state for t in tasks] == [TaskState.TASK_STATE_CANCELED] * 2


async def test_max_concurrency_bounds_the_calls_a_replica_runs_at_once(mesh: Mesh) -> None:
    gated = await asyncio.gather(*(mesh.call("gate", "hold", seconds=0.2) for _ in range(4)))
    assert max(gated) == 1  # the others waited their turn in the replica
    free = await asyncio.gather(*(mesh.call("ungated", "hold", seconds=0.2) for _ in range(4)))
    assert max(free) > 1


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_max_concurrency_is_checked_where_it_is_declared(bad: object) -> None:
    with pytest.raises(AgentDefinitionError, match="max_concurrency"):

        class Bad(Agent):
            """Bad."""

            max_concurrency = bad  # type: ignore[assignment]

            @skill
            def go(self) -> int:
                """Go."""
                return 1


def test_replica_counts_are_checked_where_they_are_declared() -> None:
    with pytest.raises(ConfigError, match="not run"):
        Mesh([Worker], policy=POLICY, replicas={"nobody": 2})
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="replicas"):
            Mesh([Worker], policy=POLICY, replicas={"worker": bad})  # type: ignore[dict-item]
    for bad in (0, 2.0, True):
        with pytest.raises(AgentDefinitionError, match="replicas"):

            class Bad(Agent):
                """Badly scaled."""

                replicas = bad  # type: ignore[assignment]

                @skill
                def noop(self) -> None:
                    """Nothing."""

"""Skill calls made to one replica in the same event-loop turn travel as one Ray call, and each
answer still comes back on its own, as soon as it is ready."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from a2a.types import Task
from ray.actor import ActorHandle

from agentmesh import (
    Agent,
    AgentUnavailableError,
    Mesh,
    Policy,
    Resources,
    RunError,
    SkillFailedError,
)
from agentmesh import skill as skill_
from agentmesh._private.call_batch import CallBatcher
from agentmesh._private.host import AgentHost
from agentmesh.protocols import a2a

POLICY = Policy.from_yaml("name: calls\nmessages: [{from: [user], to: ['*']}]\n")


class Gate(Agent):
    """Skills that say where they ran, wait for a file, or fail."""

    resources = Resources(num_cpus=0)

    @skill_
    def where(self, i: int) -> str:
        """The name of the thread that ran this call."""
        return threading.current_thread().name

    @skill_
    def wait_for(self, path: str) -> str:
        """Wait until ``path`` exists (at most a minute)."""
        deadline = time.monotonic() + 60
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.01)
        return "opened"

    @skill_
    def fail(self) -> int:
        """Always fails."""
        raise ValueError("no")


@pytest.fixture
def host(ray_session: None) -> Iterator[ActorHandle]:
    handle = ray.remote(AgentHost).options(max_concurrency=8).remote(Gate, models={})
    yield handle
    ray.kill(handle)


def _raw(skill: str, **args: object) -> bytes:
    message = a2a.skill_call_message(
        sender="user",
        recipient="gate",
        skill=skill,
        args=args,
        context_id="c",  # type: ignore[arg-type]
    )
    return message.SerializeToString()


def _result(raw: bytes) -> object:
    return a2a.task_result(Task.FromString(raw), agent="gate")


async def test_calls_of_one_turn_share_a_batch_and_a_lone_call_does_not(host: ActorHandle) -> None:
    batcher = CallBatcher(host, what="agent 'gate'")
    names = [
        _result(r)
        for r in await asyncio.gather(*(batcher.call(_raw("where", i=i)) for i in range(6)))
    ]
    assert all(str(n).startswith("gate_") for n in names)  # the host's batch threads ran them
    lone = _result(await batcher.call(_raw("where", i=9)))
    assert not str(lone).startswith("gate_")  # a plain call, on the Ray thread that took it


async def test_a_fast_call_does_not_wait_for_a_slow_one_of_its_batch(
    host: ActorHandle, tmp_path: Path
) -> None:
    batcher = CallBatcher(host, what="agent 'gate'")
    gate = tmp_path / "open"
    slow = asyncio.ensure_future(batcher.call(_raw("wait_for", path=str(gate))))
    fast = asyncio.ensure_future(batcher.call(_raw("where", i=1)))
    # the slow call waits for a file written only once the fast answer is here: were answers
    # held back for the whole batch, this would wait out its timeout and fail
    assert str(_result(await asyncio.wait_for(fast, 30))).startswith("gate_")
    assert not slow.done()
    gate.touch()
    assert _result(await asyncio.wait_for(slow, 30)) == "opened"


async def test_one_bad_call_fails_alone(host: ActorHandle) -> None:
    batcher = CallBatcher(host, what="agent 'gate'")
    good, failed, garbage = await asyncio.gather(
        batcher.call(_raw("where", i=1)),
        batcher.call(_raw("fail")),
        batcher.call(b"\xff not a message"),
        return_exceptions=True,
    )
    assert str(_result(good)).startswith("gate_")  # type: ignore[arg-type]
    with pytest.raises(SkillFailedError, match="no"):
        _result(failed)  # type: ignore[arg-type]
    assert isinstance(garbage, RunError)  # the host could not serve it: typed, this call only
    assert "failed to serve" in str(garbage)


async def test_a_dead_replica_fails_every_call_still_waiting(
    host: ActorHandle, tmp_path: Path
) -> None:
    batcher = CallBatcher(host, what="agent 'gate'")
    never = str(tmp_path / "never")
    calls = [asyncio.ensure_future(batcher.call(_raw("wait_for", path=never))) for _ in range(3)]
    await asyncio.sleep(1.0)  # the batch is running in the replica
    ray.kill(host)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
    assert all(isinstance(r, AgentUnavailableError) for r in results), results


async def test_a_mesh_fan_out_batches_its_calls(ray_session: None, tmp_path: Path) -> None:
    async with Mesh([Gate], policy=POLICY) as mesh:
        names = await asyncio.gather(*(mesh.call("gate", "where", i=i) for i in range(8)))
        assert sum(str(n).startswith("gate_") for n in names) >= 2  # at least one batch
        gate = tmp_path / "open"
        slow = asyncio.ensure_future(mesh.call("gate", "wait_for", path=str(gate)))
        fast = await asyncio.wait_for(mesh.call("gate", "where", i=0), 30)
        assert fast and not slow.done()
        gate.touch()
        assert await asyncio.wait_for(slow, 30) == "opened"

"""Vets made in the same event-loop turn travel to the security actor as one Ray call."""

from __future__ import annotations

import asyncio

import pytest
import ray

from agentmesh import AgentUnavailableError, Mesh, MessageBlocked, Policy, RunError
from agentmesh._private.security_actor import SecurityActor
from agentmesh._private.vet_batch import VetBatcher, VetCall
from agentmesh.provenance import Label

from .mesh_agents import INJECTION

POLICY = Policy.from_yaml("name: batch\nmessages: [{from: [user], to: ['*']}]\n")


class CountingSecurity(SecurityActor):
    """The real security actor, also remembering the size of each batch it served."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        self.sizes: list[int] = []

    def vet_batch(self, calls: list[VetCall]) -> list[object]:
        self.sizes.append(len(calls))
        return super().vet_batch(calls)  # type: ignore[return-value]

    def batch_sizes(self) -> list[int]:
        return self.sizes


def _message(i: int, text: str = "hello") -> VetCall:
    return VetCall("message", ("user", "echo", "echo", f"{text} {i}"), {"label": Label.user()})


@pytest.fixture
def guard(ray_session: None) -> object:
    handle = ray.remote(num_cpus=0)(CountingSecurity).remote(POLICY)
    yield handle
    ray.kill(handle)


async def test_concurrent_vets_share_one_call_and_keep_their_order(guard: object) -> None:
    batcher = VetBatcher(guard)  # type: ignore[arg-type]
    decisions = await asyncio.gather(*(batcher.vet(_message(i)) for i in range(30)))
    assert [d.verdict for d in decisions] == ["allow"] * 30
    assert [d.seq for d in decisions] == list(range(1, 31))  # decided in the order asked
    assert await guard.batch_sizes.remote() == [30]  # type: ignore[attr-defined]
    lone = await batcher.vet(_message(99))  # a lone vet waits for nothing
    assert lone.seq == 31
    assert await guard.batch_sizes.remote() == [30, 1]  # type: ignore[attr-defined]


async def test_batches_are_bounded(guard: object) -> None:
    batcher = VetBatcher(guard, max_batch=8)  # type: ignore[arg-type]
    await asyncio.gather(*(batcher.vet(_message(i)) for i in range(20)))
    sizes = await guard.batch_sizes.remote()  # type: ignore[attr-defined]
    assert sorted(sizes) == [4, 8, 8]  # served in any order: the security actor is async


async def test_a_failing_vet_fails_alone(guard: object) -> None:
    batcher = VetBatcher(guard)  # type: ignore[arg-type]
    broken = VetCall("message", ("user",))  # too few arguments: the monitor raises TypeError
    results = await asyncio.gather(
        batcher.vet(_message(1)),
        batcher.vet(broken),
        batcher.vet(_message(2)),
        return_exceptions=True,
    )
    assert await guard.batch_sizes.remote() == [3]  # type: ignore[attr-defined]
    assert [getattr(r, "seq", None) for r in (results[0], results[2])] == [1, 2]
    assert isinstance(results[1], RunError)
    assert "TypeError" in str(results[1])


async def test_a_dead_security_actor_fails_every_waiting_vet_typed(ray_session: None) -> None:
    handle = ray.remote(num_cpus=0)(CountingSecurity).remote(POLICY)
    batcher = VetBatcher(handle)
    await batcher.vet(_message(0))
    ray.kill(handle)
    results = await asyncio.gather(
        *(batcher.vet(_message(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, AgentUnavailableError) for r in results), results


async def test_a_refused_message_among_concurrent_calls_is_refused_alone(mesh: Mesh) -> None:
    texts = [f"note {i}" for i in range(12)]
    texts.insert(5, INJECTION)
    results = await asyncio.gather(
        *(mesh.call("echo", "echo", text=t) for t in texts), return_exceptions=True
    )
    assert isinstance(results.pop(5), MessageBlocked)
    assert results == [f"note {i}" for i in range(12)]

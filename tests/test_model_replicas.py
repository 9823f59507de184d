"""Model services under concurrent load: a bounded queue that refuses the excess at once,
replicas that share the load, and a dead or full replica that the calls go around."""

from __future__ import annotations

import asyncio

import pytest
import ray

from agentmesh import (
    Agent,
    GenerateRequest,
    Mesh,
    ModelBusyError,
    ModelEntry,
    ModelRoute,
    Policy,
    Resources,
    ScriptedModel,
    skill,
)
from agentmesh._private.model_service import launch_model_service

POLICY = Policy.from_yaml("name: replicas\nmessages: [{from: ['*'], to: ['*']}]\n")


class Quiet(Agent):
    """An agent that uses no model (a mesh needs one agent)."""

    resources = Resources(num_cpus=0)

    @skill
    def nothing(self) -> int:
        """Nothing."""
        return 0


def _request(prompt: str) -> GenerateRequest:
    return GenerateRequest(prompt=prompt)


async def test_a_full_replica_refuses_at_once_and_serves_the_rest(ray_session: None) -> None:
    actor = launch_model_service("slow", ScriptedModel(["a", "b", "c"], delay_s=1.0), max_queue=1)
    try:
        await actor.info.remote()  # loaded: the calls below arrive in the order sent
        first = actor.generate.remote(_request("1"))
        await asyncio.sleep(0.3)  # generating now
        second = actor.generate.remote(_request("2"))  # waits its turn
        await asyncio.sleep(0.3)
        with pytest.raises(ModelBusyError, match="max_queue 1"):
            await actor.generate.remote(_request("3"))  # refused, not queued
        answers = [(await first).text, (await second).text]
        assert answers == ["a", "b"]
        assert [c.prompt for c in await actor.calls.remote()] == ["1", "2"]
    finally:
        ray.kill(actor)


async def test_replicas_share_calls_and_a_dead_one_is_gone_around(ray_session: None) -> None:
    spec = ScriptedModel(["r"] * 8, delay_s=0.5)
    models = {"m": ModelEntry(spec=spec, replicas=2)}
    async with Mesh([Quiet], models=models, policy=POLICY) as mesh:
        answers = await asyncio.gather(*(mesh.generate("m", _request(f"p{i}")) for i in range(4)))
        assert [a.text for a in answers] == ["r"] * 4
        served = [len(await mesh.model_handle("m", i).calls.remote()) for i in (0, 1)]
        assert served == [2, 2]  # least loaded first: the calls alternate
        ray.kill(mesh.model_handle("m", 0))
        after = await asyncio.gather(*(mesh.generate("m", _request(f"q{i}")) for i in range(3)))
        assert [a.text for a in after] == ["r"] * 3
        assert len(await mesh.model_handle("m", 1).calls.remote()) == 2 + 3


async def test_a_full_model_falls_back_to_the_next_on_its_route(ray_session: None) -> None:
    models = {
        "small": ModelEntry(spec=ScriptedModel(["small"], delay_s=1.5), max_queue=0),
        "big": ModelEntry(spec=ScriptedModel(["big"]), prompt_cost=1.0),
    }
    routes = {"chat": ModelRoute(models=["small", "big"])}
    async with Mesh([Quiet], models=models, routes=routes, policy=POLICY) as mesh:
        busy = asyncio.ensure_future(mesh.generate("chat", _request("one")))
        await asyncio.sleep(0.5)  # "small" is generating and takes no one waiting
        spilled = await mesh.generate("chat", _request("two"))
        assert (spilled.text, spilled.fallbacks) == ("big", ["small"])
        assert (await busy).text == "small"

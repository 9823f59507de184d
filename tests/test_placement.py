"""Agents are placed by the resources and node labels they declare."""

from __future__ import annotations

import pytest
import ray

from agentmesh import Agent, Mesh, PlacementError, Resources, skill

from .mesh_agents import POLICY


class InLab(Agent):
    """Runs only on a node labelled zone=lab."""

    name = "left"  # the test policy lets the user call any agent; reuse a known name
    resources = Resources(num_cpus=0.5, labels={"zone": "lab"})

    @skill
    def where(self) -> dict[str, list[str] | str]:
        """The node labels and CPUs this actor was given."""
        ctx = ray.get_runtime_context()
        return {
            "zone": ctx.get_node_labels().get("zone", ""),
            "cpus": str(ctx.get_assigned_resources().get("CPU")),
        }


class OnMars(InLab):
    """Asks for a label no node has."""

    name = "right"
    resources = Resources(labels={"zone": "mars"})


class NeedsGpu(InLab):
    """Asks for a GPU the test node lacks."""

    name = "echo"
    resources = Resources(num_gpus=1)


async def test_agent_runs_on_a_node_with_its_labels(ray_session: None) -> None:
    async with Mesh([InLab], policy=POLICY) as mesh:
        placed = await mesh.call("left", "where")
    assert placed == {"zone": "lab", "cpus": "0.5"}


@pytest.mark.parametrize("agent", [OnMars, NeedsGpu])
async def test_unplaceable_agent_fails_start_with_a_typed_error(
    ray_session: None, agent: type[Agent]
) -> None:
    with pytest.raises(PlacementError, match=agent.name) as info:
        await Mesh([InLab, agent], policy=POLICY, start_timeout_s=3).start()
    assert "cluster offers" in str(info.value)

"""Agents are placed by the resources, node labels and strategy they declare.

One node here (the session's Ray, labelled zone=lab): labels, unplaceable agents, nonsense
declarations and the pack group's life. tests/test_multinode.py places agents on several nodes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import ray
from ray.util.placement_group import placement_group_table

from agentmesh import Agent, AgentDefinitionError, Mesh, PlacementError, Resources, skill

from .mesh_agents import POLICY


class InLab(Agent):
    """Runs only on a node labelled zone=lab."""

    name = "left"  # the test policy lets the user call any agent; reuse a known name
    resources = Resources(num_cpus=0.5, labels={"zone": "lab"})

    @skill
    def where(self) -> dict[str, str]:
        """The node, its zone label and the CPUs this actor was given."""
        ctx = ray.get_runtime_context()
        return {
            "node": ctx.get_node_id(),
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


class PackedOnMars(InLab):
    """Packed replicas for a label no node has: their group can never be reserved."""

    name = "tooler"
    replicas = 2
    resources = Resources(num_cpus=0.1, labels={"zone": "mars"}, strategy="pack")


class Packed(InLab):
    """Two replicas reserved together."""

    name = "joiner"
    replicas = 2
    resources = Resources(num_cpus=0.1, strategy="pack")


class Spread(InLab):
    """Two replicas spread (over the one node there is)."""

    name = "tasker"
    replicas = 2
    resources = Resources(num_cpus=0.1, strategy="spread")


def _groups(agent: str) -> list[dict[str, Any]]:
    """Ray's records of the placement groups a mesh made for ``agent``."""
    return [
        g for g in placement_group_table().values() if g["name"].startswith(f"agentmesh-{agent}-")
    ]


async def test_agent_runs_on_a_node_with_its_labels(ray_session: None) -> None:
    async with Mesh([InLab], policy=POLICY) as mesh:
        placed = await mesh.call("left", "where")
        assert mesh.placement() == {"left": [placed["node"]]}
    assert placed["zone"] == "lab" and placed["cpus"] == "0.5"


@pytest.mark.parametrize("agent", [OnMars, NeedsGpu])
async def test_unplaceable_agent_fails_start_with_a_typed_error(
    ray_session: None, agent: type[Agent]
) -> None:
    with pytest.raises(PlacementError, match=agent.name) as info:
        await Mesh([InLab, agent], policy=POLICY, start_timeout_s=3).start()
    assert "cluster offers" in str(info.value)


async def test_packed_replicas_share_one_group_that_goes_with_the_mesh(
    ray_session: None,
) -> None:
    node = ray.get_runtime_context().get_node_id()
    async with Mesh([Packed, Spread], policy=POLICY) as mesh:
        assert mesh.placement() == {"joiner": [node, node], "tasker": [node, node]}
        [group] = _groups("joiner")
        assert group["state"] == "CREATED" and group["strategy"] == "PACK"
        assert list(group["bundles"].values()) == [{"CPU": 0.1}] * 2
        assert not _groups("tasker")  # spread needs no reservation
        assert (await mesh.call("joiner", "where"))["cpus"] == "0.1"
    assert [g["state"] for g in _groups("joiner")] == ["REMOVED"]


async def test_an_unplaceable_pack_fails_start_and_leaves_no_reservation(
    ray_session: None,
) -> None:
    with pytest.raises(PlacementError, match=r"tooler.*'strategy': 'pack'"):
        await Mesh([InLab, PackedOnMars], policy=POLICY, start_timeout_s=3).start()
    assert [g["state"] for g in _groups("tooler")] == ["REMOVED"]


@pytest.mark.parametrize(
    ("declared", "complaint"),
    [
        ({"strategy": "scatter"}, "strategy: Input should be 'default', 'spread' or 'pack'"),
        ({"num_cpus": 0, "strategy": "pack"}, "strategy 'pack' reserves each replica's"),
        ({"labels": {"tier": "edge node"}}, "Invalid label selector value `edge node`"),
        ({"labels": {"-tier": "edge"}}, "Invalid label key name `-tier`"),
        ({"custom": {"GPU": 1}}, "cannot be Ray's own ['GPU']: use num_cpus/num_gpus"),
        ({"num_gpus": 1.5}, "num_gpus above 1 must be whole, not 1.5"),
        ({"num_cpus": -1}, "num_cpus: Input should be greater than or equal to 0"),
        ({"node_id": "abc"}, "node_id: Extra inputs are not permitted"),
    ],
)
def test_nonsense_placement_fails_when_the_agent_is_defined(
    declared: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(AgentDefinitionError, match=re.escape(complaint)):

        class Misplaced(Agent):
            """Never defined."""

            resources = Resources(**declared)


def test_sensible_placements_are_kept_as_declared() -> None:
    res = Resources(num_gpus=2, labels={"tier": "!edge", "ray.io/node-id": "abc"}, strategy="pack")
    assert (res.num_gpus, res.strategy) == (2, "pack")
    assert res.labels == {"tier": "!edge", "ray.io/node-id": "abc"}

"""Shared fixtures: one real Ray session for the whole test session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import ray

from agentmesh import Mesh, ScriptedError, ScriptedModel
from agentmesh._private.ray_init import ensure_ray

from .mesh_agents import DOCS, FLAKY, POLICY, Echo, Joiner, Left, Right, Tooler

# Logical CPUs for Ray's accounting; the machine has 2 cores. The llama model service asks for 1.
TEST_NUM_CPUS = 4
# The test node's labels, for placement tests.
TEST_LABELS = {"zone": "lab"}


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    started = ensure_ray(num_cpus=TEST_NUM_CPUS, labels=TEST_LABELS)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
async def mesh(ray_session: None) -> AsyncIterator[Mesh]:
    """One mesh of the test agents for the session (tests that break a mesh start their own).

    Its scripted model is consumed by tests/test_mesh.py::test_scripted_model_through_the_mesh.
    """
    model = ScriptedModel(["a scripted answer", ScriptedError(message="model broke")])
    agents = [Echo, Left, Right, Tooler, Joiner]
    async with Mesh(agents, tools=[DOCS, FLAKY], models={"scripted": model}, policy=POLICY) as m:
        yield m

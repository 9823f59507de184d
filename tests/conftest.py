"""Shared fixtures: one real Ray session for the whole test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import ray

from agentmesh import Mesh, ScriptedError, ScriptedModel
from agentmesh._private.ray_init import ensure_ray

from .mesh_agents import (
    DOCS,
    FLAKY,
    PLANNER_REPLIES,
    POLICY,
    Echo,
    Joiner,
    Left,
    Right,
    Tasker,
    Tooler,
)
from .office import OFFICE, Assistant, Clerk
from .office import POLICY as OFFICE_POLICY

# Logical CPUs for Ray's accounting; the machine has 2 cores. The llama model service asks for 1.
TEST_NUM_CPUS = 4
# The test node's labels, for placement tests.
TEST_LABELS = {"zone": "lab"}


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tool pins of test meshes go to a temporary folder, not the repository."""
    path = tmp_path_factory.mktemp("agentmesh-state")
    old = os.environ.get("AGENTMESH_STATE_DIR")
    os.environ["AGENTMESH_STATE_DIR"] = str(path)
    yield
    if old is None:
        os.environ.pop("AGENTMESH_STATE_DIR", None)
    else:
        os.environ["AGENTMESH_STATE_DIR"] = old


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    started = ensure_ray(num_cpus=TEST_NUM_CPUS, labels=TEST_LABELS)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
async def mesh(ray_session: None) -> AsyncIterator[Mesh]:
    """One mesh of the test agents for the session (tests that break a mesh start their own).

    Its scripted models are consumed by tests/test_mesh.py::test_scripted_model_through_the_mesh
    and tests/test_run.py::test_model_plan_through_the_mesh.
    """
    models = {
        "scripted": ScriptedModel(["a scripted answer", ScriptedError(message="model broke")]),
        "planner": ScriptedModel(PLANNER_REPLIES),
    }
    agents = [Echo, Left, Right, Tooler, Joiner, Tasker]
    async with Mesh(agents, tools=[DOCS, FLAKY], models=models, policy=POLICY) as m:
        yield m


@pytest.fixture(scope="session")
async def office_mesh(ray_session: None) -> AsyncIterator[Mesh]:
    """The office mesh of the provenance and grant tests (tests/office.py); its server's effect
    log lives for the session, so tests look for their own unique values in it."""
    models = {"scripted": ScriptedModel(["one", "two", "three", "four"])}
    agents = [Assistant, Clerk]
    async with Mesh(agents, tools=[OFFICE], models=models, policy=OFFICE_POLICY) as m:
        yield m

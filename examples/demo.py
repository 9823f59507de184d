"""The demo mesh: three specialised agents brief a topic from an MCP document server.

The plan has two parallel branches (the researcher gathers sources while the analyst outlines)
that meet at the writer, who summarises with the local llama.cpp model and asks the analyst
(agent to agent) to review the draft. One document in the demo's knowledge base carries a
planted prompt injection; the security actor quarantines it and the researcher lists it as
skipped. Run it with ``agentmesh demo``.
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from agentmesh.agents import Analyst, Researcher, Writer
from agentmesh.executor import RunResult
from agentmesh.inference import LlamaCppModel, ModelSpec
from agentmesh.mesh import Mesh
from agentmesh.planner import Plan, PlanStep, TemplatePlanner
from agentmesh.protocols.mcp import StdioServer
from agentmesh.security import Decision, QuarantineItem

__all__ = ["DEMO_GOAL", "DemoReport", "build_mesh", "demo_plan", "demo_servers", "run_demo"]

DEMO_GOAL = "running agents at the edge"
AGENTS = (Researcher, Analyst, Writer)


def demo_servers() -> list[StdioServer]:
    """The example MCP server, started once over stdio with this interpreter."""
    return [
        StdioServer(name="docs", command=[sys.executable, "-m", "agentmesh.examples.docs_server"])
    ]


def demo_plan(goal: str) -> Plan:
    """gather and outline run in parallel; compose needs both."""
    return Plan(
        goal=goal,
        steps=[
            PlanStep(id="gather", agent="researcher", skill="gather", args={"topic": goal}),
            PlanStep(id="outline", agent="analyst", skill="outline", args={"topic": goal}),
            PlanStep(
                id="compose",
                agent="writer",
                skill="compose",
                args={"topic": goal},
                inputs={"notes": "gather", "outline": "outline"},
            ),
        ],
        output="compose",
    )


def build_mesh(*, model: ModelSpec | None = None, address: str | None = None) -> Mesh:
    """The demo mesh on embedded defaults: local Ray, the bundled model, the docs server.

    Called with no arguments it is the demo's mesh factory: a demo run cut off midway is
    finished by ``agentmesh resume RUN_ID``, which calls it to rebuild the mesh."""
    return Mesh(
        AGENTS,
        tools=demo_servers(),
        models={"local": model or LlamaCppModel()},
        policy="demo",
        address=address,
        num_cpus=4,
        factory="agentmesh.examples.demo:build_mesh",  # `agentmesh resume RUN_ID` rebuilds it
    )


class DemoReport(BaseModel):
    result: RunResult
    decisions: list[Decision]
    quarantine: list[QuarantineItem]
    # agent -> the Ray node ids of its actors (on a cluster, the spread agents' nodes differ)
    placement: dict[str, list[str]]


async def run_demo(
    goal: str = DEMO_GOAL, *, model: ModelSpec | None = None, address: str | None = None
) -> DemoReport:
    """Run the demo goal end to end and collect what the security actor decided."""
    async with build_mesh(model=model, address=address) as mesh:
        result = await mesh.run(goal, planner=TemplatePlanner(demo_plan))
        return DemoReport(
            result=result,
            decisions=await mesh.decisions(),
            quarantine=await mesh.quarantine(),
            placement=mesh.placement(),
        )

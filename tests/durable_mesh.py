"""The mesh of the durable-run tests: a worker whose every effect lands in a log file.

``build_mesh`` is also the mesh factory a run records (``tests.durable_mesh:build_mesh``), so
``agentmesh resume`` in another process rebuilds the same mesh; it reads the effect log's
folder from ``$AGENTMESH_TEST_EFFECTS``. Run as ``python -m tests.durable_mesh RUN_ID GATE``
it runs :func:`chain_plan` as a driver a test can kill; as ``python -m tests.durable_mesh
--pause RUN_ID`` it runs :func:`approval_plan` (mesh :func:`build_approval_mesh`) until the
run pauses, and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import ClassVar

from agentmesh import (
    Agent,
    Mesh,
    Plan,
    PlanStep,
    Policy,
    Resources,
    RunPaused,
    StdioServer,
    skill,
)
from agentmesh.planner import TemplatePlanner
from agentmesh.protocols.mcp import Sandbox

# Kept here rather than in tests/policies (whose packs have no tool labels).
POLICY = Policy.from_yaml("""
name: durable
description: A worker that records effects through an MCP server, and a delegator asking it.
default: block
messages:
  - {from: [user], to: ["*"]}
  - {from: [delegator], to: [worker.act]}
tools:
  worker: ["effects.*"]
tool_labels:
  # side-effecting (the default); its result is the server's own words, not the outside world's
  effects.record: {result_trust: trusted}
  effects.peek: {effect: read-only, result_trust: trusted}
""")
#: The same, except that effects on untrusted data need a human's approval, and the peek
#: tool's result is untrusted (the outside world's words), so a node fed by it is too.
APPROVAL_POLICY = Policy.from_yaml("""
name: durable-approval
description: The durable policy, with approvals.
default: block
messages:
  - {from: [user], to: ["*"]}
tools:
  worker: ["effects.*"]
tool_labels:
  effects.record: {result_trust: trusted, untrusted_arguments: approve}
  effects.peek: {effect: read-only}
""")
SERVER = str(Path(__file__).parent / "servers" / "effects_server.py")
EFFECTS_ENV = "AGENTMESH_TEST_EFFECTS"
FACTORY = "tests.durable_mesh:build_mesh"
APPROVAL_FACTORY = "tests.durable_mesh:build_approval_mesh"


class Worker(Agent):
    """Records effects."""

    name = "worker"
    tools = ("effects.*",)
    resources = Resources(num_cpus=0.1)
    attempts: ClassVar[dict[str, int]] = {}

    @skill
    async def act(
        self,
        entry: str,
        after: str = "",
        gate: str = "",
        require: str = "",
        fail_first: bool = False,
    ) -> str:
        """Record ``entry`` (an effect); then wait for the file ``gate`` (telling the test it got
        there in ``gate.reached``), fail if the file ``require`` is missing, or fail the first
        attempt if asked: each time after the effect, as a crash mid-node would."""
        recorded = (await self.use_tool("effects.record", entry=entry)).text
        if gate:
            Path(gate + ".reached").write_text(entry)
            while not os.path.exists(gate):
                await asyncio.sleep(0.05)
        if require and not os.path.exists(require):
            raise RuntimeError(f"{require} is missing")
        self.attempts[entry] = self.attempts.get(entry, 0) + 1
        if fail_first and self.attempts[entry] == 1:
            raise RuntimeError("the first attempt fails after its effect")
        return f"{after} {recorded}".strip()

    @skill
    async def peek(self, entry: str) -> str:
        """Call the read-only tool."""
        return (await self.use_tool("effects.peek", entry=entry)).text


class Delegator(Agent):
    """Asks the worker (a nested skill call) and fails its own first attempt if asked."""

    name = "delegator"
    resources = Resources(num_cpus=0.1)
    attempts: ClassVar[dict[str, int]] = {}

    @skill
    async def delegate(self, entry: str, fail_first: bool = False) -> str:
        """Have the worker record ``entry``."""
        answer = str(await self.call("worker", "act", entry=entry))
        self.attempts[entry] = self.attempts.get(entry, 0) + 1
        if fail_first and self.attempts[entry] == 1:
            raise RuntimeError("the first attempt fails after the nested effect")
        return answer


def effects_server(folder: str | os.PathLike[str]) -> StdioServer:
    """The effect server, sandboxed, allowed to write only ``folder`` (created at start)."""
    folder = str(folder)
    return StdioServer(
        name="effects",
        command=[sys.executable, SERVER],
        env={"EFFECTS_LOG": os.path.join(folder, "effects.log")},
        sandbox=Sandbox(writable=[folder]),
    )


def build_mesh() -> Mesh:
    """The test mesh (the factory runs record)."""
    return Mesh(
        [Worker, Delegator],
        tools=[effects_server(os.environ[EFFECTS_ENV])],
        policy=POLICY,
        num_cpus=2,
        factory=FACTORY,
    )


def build_approval_mesh() -> Mesh:
    """The test mesh with approvals (the factory approval runs record)."""
    return Mesh(
        [Worker],
        tools=[effects_server(os.environ[EFFECTS_ENV])],
        policy=APPROVAL_POLICY,
        num_cpus=2,
        factory=APPROVAL_FACTORY,
    )


def approval_plan(goal: str) -> Plan:
    """a; then b, which asks a human first; then c (fed by b); d beside them, fed untrusted
    input (peek), so its effect waits for approval. Effects are named ``<goal>-<step>``."""

    def act(step: str, after: str | None = None, approval: str | None = None) -> PlanStep:
        return PlanStep(
            id=step,
            agent="worker",
            skill="act",
            args={"entry": f"{goal}-{step}"},
            inputs={"after": after} if after else {},
            approval=approval,
        )

    return Plan(
        goal=goal,
        steps=[
            act("a"),
            act("b", after="a", approval="Ship b?"),
            act("c", after="b"),
            PlanStep(id="p", agent="worker", skill="peek", args={"entry": f"{goal}-p"}),
            act("d", after="p"),
        ],
        output="c",
    )


def effects(folder: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Every effect the server made, in order."""
    path = Path(folder) / "effects.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def chain_plan(gate: str) -> TemplatePlanner:
    """a, then b (which waits at ``gate`` after its effect), then c; each gets the last's
    output."""
    steps = [
        PlanStep(id="a", agent="worker", skill="act", args={"entry": "a"}),
        PlanStep(
            id="b",
            agent="worker",
            skill="act",
            args={"entry": "b", "gate": gate},
            inputs={"after": "a"},
        ),
        PlanStep(id="c", agent="worker", skill="act", args={"entry": "c"}, inputs={"after": "b"}),
    ]
    return TemplatePlanner(lambda goal: Plan(goal=goal, steps=steps, output="c"))


async def _main(run_id: str, gate: str) -> None:
    async with build_mesh() as mesh:
        result = await mesh.run("chain", planner=chain_plan(gate), run_id=run_id)
        print(json.dumps(result.output))


async def _pause(run_id: str) -> None:
    """Run the approval plan until it pauses, and exit (the driver is gone while it waits)."""
    async with build_approval_mesh() as mesh:
        try:
            await mesh.run("approve", planner=TemplatePlanner(approval_plan), run_id=run_id)
        except RunPaused as paused:
            print(f"paused: {paused}")


if __name__ == "__main__":
    if sys.argv[1] == "--pause":
        asyncio.run(_pause(sys.argv[2]))
    else:
        asyncio.run(_main(sys.argv[1], sys.argv[2]))

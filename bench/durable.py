"""What durability costs: checkpoints per node, and the ledger per side-effecting tool call.

Two measurements, each against a floor taken in the same run on the same mesh:

- A chain of ``NODES`` trivial nodes run by ``Mesh.run`` (every transition checkpointed in a
  SQLite run store, fsynced) against the same plan run by the executor alone (no store).
- ``CALLS`` sequential calls of a side-effecting tool made inside a run node (each with an
  idempotency key: a ledger lookup before, a ledger write after) against the same calls made
  through ``Mesh.call`` outside any run (no key, no ledger).

The last line is a JSON object; ``node_ratio`` and ``call_ratio`` are durable p50 / floor p50.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentmesh import Agent, Mesh, Plan, PlanStep, Policy, StdioServer, TemplatePlanner, skill
from agentmesh._private.ray_init import ensure_ray
from agentmesh.executor import execute
from agentmesh.planner import validate_plan

NODES = 40
CALLS = 200
SERVER = StdioServer(name="docs", command=[sys.executable, "-m", "agentmesh.examples.docs_server"])
POLICY = Policy.from_yaml("""
name: bench-durable
messages: [{from: [user], to: ["*"]}]
tools: {caller: [docs.word_count]}
tool_labels:
  docs.word_count: {effect: side-effecting, result_trust: trusted}
""")


class Caller(Agent):
    """Calls a tool many times; passes text on."""

    tools = ("docs.word_count",)

    @skill
    async def timed(self, n: int) -> list[float]:
        """Latency in seconds of each of ``n`` sequential (side-effecting) tool calls."""
        out = []
        for i in range(n):
            start = time.perf_counter()
            await self.use_tool("docs.word_count", text=f"call {i}")
            out.append(time.perf_counter() - start)
        return out

    @skill
    def step(self, text: str) -> str:
        """Pass the text on."""
        return text


def chain(goal: str) -> Plan:
    steps = [PlanStep(id="n0", agent="caller", skill="step", args={"text": goal})]
    for i in range(1, NODES):
        steps.append(
            PlanStep(id=f"n{i}", agent="caller", skill="step", inputs={"text": f"n{i - 1}"})
        )
    return Plan(goal=goal, steps=steps)


async def main() -> None:
    ensure_ray(num_cpus=4)
    with tempfile.TemporaryDirectory() as state:
        mesh = Mesh([Caller], tools=[SERVER], policy=POLICY, run_store=Path(state) / "runs.db")
        async with mesh:
            router = mesh._ready()
            plan = chain("x")
            graph = validate_plan(plan, mesh.catalog())
            floor_nodes, durable_nodes = [], []
            for _ in range(3):  # alternated, so both see the same machine
                start = time.perf_counter()
                await execute(plan, graph, router.send)
                floor_nodes.append((time.perf_counter() - start) / NODES)
                start = time.perf_counter()
                await mesh.run("x", planner=TemplatePlanner(chain))
                durable_nodes.append((time.perf_counter() - start) / NODES)
            await mesh.call("caller", "timed", n=5)  # warm
            floor_calls = await mesh.call("caller", "timed", n=CALLS)
            plan_calls = Plan(
                goal="calls",
                steps=[PlanStep(id="t", agent="caller", skill="timed", args={"n": CALLS})],
            )
            result = await mesh.run("calls", planner=TemplatePlanner(lambda _: plan_calls))
            durable_calls = result.output
    assert isinstance(floor_calls, list) and isinstance(durable_calls, list)
    node_floor, node_durable = statistics.median(floor_nodes), statistics.median(durable_nodes)
    call_floor = statistics.median(float(str(x)) for x in floor_calls)
    call_durable = statistics.median(float(str(x)) for x in durable_calls)
    print(f"per node: executor alone {node_floor * 1e3:.2f} ms, ", end="")
    print(f"checkpointed {node_durable * 1e3:.2f} ms")
    print(f"side-effecting call p50: outside a run {call_floor * 1e3:.2f} ms, ", end="")
    print(f"in a run (key + ledger) {call_durable * 1e3:.2f} ms")
    print(
        json.dumps(
            {
                "node_floor_ms": round(node_floor * 1e3, 3),
                "node_durable_ms": round(node_durable * 1e3, 3),
                "node_ratio": round(node_durable / node_floor, 2),
                "call_floor_ms": round(call_floor * 1e3, 3),
                "call_durable_ms": round(call_durable * 1e3, 3),
                "call_ratio": round(call_durable / call_floor, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

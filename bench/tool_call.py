"""One MCP tool call through the mesh versus a direct mcp client call, in the same run.

Through the mesh an agent's ``use_tool`` goes to the broker (the tool gateway actor), which
asks the security actor to approve the call, checks the arguments against the tool's schema,
calls the (sandboxed) server on its open session and has the security actor scan the result.
The floor is a direct call on an open session to the same server, started the same way.
Also reports what starting a server costs, sandboxed and not. The last line is a JSON object;
``ratio`` is mesh p50 / direct p50.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from agentmesh import Agent, Mesh, Policy, StdioServer, skill
from agentmesh._private.ray_init import ensure_ray
from agentmesh.protocols.mcp import McpClientPool

N = 300
SERVER = StdioServer(name="docs", command=[sys.executable, "-m", "agentmesh.examples.docs_server"])
ARGS = {"text": "one two three four"}


class Caller(Agent):
    """Calls a tool many times and reports each call's latency."""

    @skill
    async def timed(self, tool: str, n: int) -> list[float]:
        """Latency in seconds of each of ``n`` sequential calls of ``tool``."""
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await self.use_tool(tool, **ARGS)
            out.append(time.perf_counter() - start)
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def direct(n: int) -> list[float]:
    async with McpClientPool([SERVER]) as pool:
        await pool.call("docs.word_count", ARGS)
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await pool.call("docs.word_count", ARGS)
            out.append(time.perf_counter() - start)
        return out


async def start_cost(server: StdioServer, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        async with McpClientPool([server]):
            times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main() -> None:
    ensure_ray(num_cpus=2)
    policy = Policy.from_yaml(
        "name: bench\nmessages: [{from: [user], to: ['*']}]\ntools: {caller: [docs.word_count]}\n"
    )
    async with Mesh([Caller], tools=[SERVER], policy=policy) as mesh:
        await mesh.call("caller", "timed", tool="docs.word_count", n=20)  # warm up
        mesh_lat: list[float] = []
        direct_lat: list[float] = []
        for _ in range(3):  # interleaved rounds: noise hits both alike
            mesh_lat += await mesh.call("caller", "timed", tool="docs.word_count", n=N // 3)  # type: ignore[operator]
            direct_lat += await direct(N // 3)
    unsandboxed = SERVER.model_copy(update={"unsandboxed": True})
    start_sandboxed, start_plain = await start_cost(SERVER), await start_cost(unsandboxed)
    figures = {
        "bench": "tool_call",
        "mesh_p50_ms": round(1000 * pct(mesh_lat, 0.5), 3),
        "mesh_p99_ms": round(1000 * pct(mesh_lat, 0.99), 3),
        "direct_p50_ms": round(1000 * pct(direct_lat, 0.5), 3),
        "direct_p99_ms": round(1000 * pct(direct_lat, 0.99), 3),
        "ratio": round(pct(mesh_lat, 0.5) / pct(direct_lat, 0.5), 2),
        "server_start_sandboxed_s": round(start_sandboxed, 3),
        "server_start_unsandboxed_s": round(start_plain, 3),
    }
    print(
        f"tool call p50: mesh {figures['mesh_p50_ms']} ms, direct {figures['direct_p50_ms']} ms "
        f"(ratio {figures['ratio']}); p99: mesh {figures['mesh_p99_ms']} ms, "
        f"direct {figures['direct_p99_ms']} ms"
    )
    print(f"server start: sandboxed {start_sandboxed:.3f} s, unsandboxed {start_plain:.3f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

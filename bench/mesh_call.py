"""One skill call through the mesh, as a ratio to a raw Ray actor call measured in the same run.

A mesh call is an A2A message vetted by the security actor, delivered to the agent's actor,
answered with an A2A task whose reply is vetted again: three actor round trips plus A2A
encoding and two scanner passes. The floor is one synchronous raw Ray actor round trip.
Prints its figures, the last line a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import ray

from agentmesh import Agent, Mesh, Policy, skill
from agentmesh._private.ray_init import ensure_ray

N = 200
ROUNDS = 3


class Echo(Agent):
    """Echoes."""

    @skill
    def echo(self, text: str) -> str:
        """Return the text."""
        return text


@ray.remote(num_cpus=0)
class RawEcho:
    def echo(self, text: str) -> str:
        return text


async def per_second(call: object, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await call(f"message {i}")  # type: ignore[operator]
    return n / (time.perf_counter() - start)


async def main() -> None:
    ensure_ray(num_cpus=2)
    raw = RawEcho.remote()  # type: ignore[attr-defined]
    policy = Policy.from_yaml("name: bench\nmessages:\n  - {from: [user], to: ['*']}\n")
    async with Mesh([Echo], policy=policy) as mesh:

        async def raw_call(text: str) -> str:
            return await raw.echo.remote(text)  # type: ignore[no-any-return]

        async def mesh_call(text: str) -> object:
            return await mesh.call("echo", "echo", text=text)

        await per_second(raw_call, 20)  # warm up both paths
        await per_second(mesh_call, 20)
        raw_rates, mesh_rates = [], []
        for _ in range(ROUNDS):  # interleaved, so noise hits both alike
            raw_rates.append(await per_second(raw_call, N))
            mesh_rates.append(await per_second(mesh_call, N))
    floor, ours = statistics.median(raw_rates), statistics.median(mesh_rates)
    print(f"raw Ray actor call: {floor:.0f}/s; mesh skill call: {ours:.0f}/s")
    print(f"mesh call costs {floor / ours:.2f}x a raw actor round trip")
    print(
        json.dumps(
            {
                "bench": "mesh_call",
                "raw_per_s": round(floor, 1),
                "mesh_per_s": round(ours, 1),
                "slowdown_vs_raw": round(floor / ours, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

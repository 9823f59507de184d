"""One agent-to-agent hop inside the mesh, next to a raw Ray actor call, in the same run.

A hop is an A2A skill-call message to an agent's actor and the A2A task that answers it. With
vetting on (the mesh's only mode) the security actor also vets the message and the reply; the
"vetting off" figure (a router with vetting disabled, used by this benchmark alone) is the
transport's own cost. Payloads of 100 B, 10 KB and 1 MB. The last line is a JSON object;
``ratio`` is the mesh hop p50 with vetting off over the raw Ray call p50, for 100 B.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import ray

from agentmesh import Agent, Mesh, Policy, skill
from agentmesh._private.ray_init import ensure_ray
from agentmesh._private.router import Router

SIZES = {"100B": 100, "10KB": 10_000, "1MB": 1_000_000}
N = {"100B": 300, "10KB": 200, "1MB": 20}


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


async def latencies(call: Callable[[str], Awaitable[object]], text: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await call(text)
        out.append(time.perf_counter() - start)
    return sorted(out)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    ensure_ray(num_cpus=2)
    raw = RawEcho.remote()  # type: ignore[attr-defined]
    policy = Policy.from_yaml("name: bench\nmessages: [{from: [user], to: ['*']}]\n")
    figures: dict[str, object] = {"bench": "hop"}
    async with Mesh([Echo], policy=policy) as mesh:
        vetted = mesh._ready()
        unvetted = Router("user", vetted.directory, None, vet=False)

        async def raw_call(text: str) -> object:
            return await raw.echo.remote(text)

        async def mesh_on(text: str) -> object:
            return await vetted.send("echo", "echo", {"text": text}, context_id="bench")

        async def mesh_off(text: str) -> object:
            return await unvetted.send("echo", "echo", {"text": text}, context_id="bench")

        for label, size in SIZES.items():
            text = "x" * size
            for call in (raw_call, mesh_on, mesh_off):  # warm up
                await latencies(call, text, 5)
            rows = {"raw": [], "on": [], "off": []}  # type: dict[str, list[float]]
            for _ in range(3):  # interleaved rounds: noise hits all alike
                rows["raw"] += await latencies(raw_call, text, N[label] // 3)
                rows["on"] += await latencies(mesh_on, text, N[label] // 3)
                rows["off"] += await latencies(mesh_off, text, N[label] // 3)
            for kind, values in rows.items():
                values.sort()
                figures[f"{label}_{kind}_p50_ms"] = round(1000 * pct(values, 0.5), 3)
                figures[f"{label}_{kind}_p99_ms"] = round(1000 * pct(values, 0.99), 3)
                figures[f"{label}_{kind}_per_s"] = round(len(values) / sum(values), 1)
            print(
                f"{label}: raw {figures[f'{label}_raw_p50_ms']} ms, mesh vetting off "
                f"{figures[f'{label}_off_p50_ms']} ms, on {figures[f'{label}_on_p50_ms']} ms (p50)"
            )
    figures["ratio"] = round(
        float(figures["100B_off_p50_ms"]) / float(figures["100B_raw_p50_ms"]),
        2,  # type: ignore[arg-type]
    )
    figures["ratio_vetting_on"] = round(
        float(figures["100B_on_p50_ms"]) / float(figures["100B_raw_p50_ms"]),
        2,  # type: ignore[arg-type]
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

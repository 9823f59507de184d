"""One agent-to-agent hop inside the mesh, next to a raw Ray actor call, in the same run; and the
mesh's A2A gateway round trip next to a bare a2a-sdk server doing the same work.

A hop is an A2A skill-call message to an agent's actor and the A2A task that answers it. With
vetting on (the mesh's only mode) the security actor also vets the message and the reply; the
"vetting off" figure (a router with vetting disabled, used by this benchmark alone) is the
transport's own cost. Payloads of 100 B, 10 KB and 1 MB.

The gateway round trip: a2a-sdk's client, JSON-RPC over loopback HTTP, to the gateway
(``build_a2a_app``, uvicorn, API key), which calls the echo skill through the mesh (vetting on);
next to the same client and message to a bare a2a-sdk server (``DefaultRequestHandler`` and an
echoing ``AgentExecutor``, uvicorn). Payloads of 100 B and 10 KB. See ``_a2a_servers.py``.

The last line is a JSON object; ``ratio`` is the mesh hop p50 with vetting off over the raw Ray
call p50, and ``gateway_ratio`` the gateway p50 over the bare a2a-sdk server p50, both for 100 B.
``ratio_async_floor`` is the same hop for an async skill over an async actor's raw call (an
agent host is a threaded actor: sync skills run in the Ray thread that takes the call, async
skills on the host's event loop thread). Calls alternate one by one, so the noise of a shared
machine hits every kind alike.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

import ray
from _a2a_servers import Call, bare_app, echo_client, gateway_app, serving

from agentmesh import Agent, Mesh, Policy, skill
from agentmesh._private.ray_init import ensure_ray
from agentmesh._private.router import Router

SIZES = {"100B": 100, "10KB": 10_000, "1MB": 1_000_000}
N = {"100B": 600, "10KB": 200, "1MB": 20}
GATEWAY_SIZES = ("100B", "10KB")
GATEWAY_N = {"100B": 150, "10KB": 90}


class Echo(Agent):
    """Echoes."""

    @skill
    def echo(self, text: str) -> str:
        """Return the text."""
        return text

    @skill
    async def aecho(self, text: str) -> str:
        """Return the text, without a worker thread."""
        return text


@ray.remote(num_cpus=0)
class RawEcho:
    def echo(self, text: str) -> str:
        return text


@ray.remote(num_cpus=0)
class RawAsyncEcho:
    """An async actor: the floor for any agent host that must await (other agents, tools,
    models) while it serves; Ray dispatches its calls through an event loop thread."""

    async def echo(self, text: str) -> str:
        return text


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(
    figures: dict[str, object], label: str, calls: Mapping[str, Call], n: int
) -> None:
    """p50, p99 and calls/s of each call on the ``label`` payload. The calls alternate one by
    one (a, b, c, a, b, c, ...), so the noise of this shared machine hits all of them alike."""
    text = "x" * SIZES[label]
    rows: dict[str, list[float]] = {kind: [] for kind in calls}
    for i in range(n + 5):  # the first 5 rounds warm up
        for kind, call in calls.items():
            start = time.perf_counter()
            await call(text)
            if i >= 5:
                rows[kind].append(time.perf_counter() - start)
    for kind, values in rows.items():
        values.sort()
        figures[f"{label}_{kind}_p50_ms"] = round(1000 * pct(values, 0.5), 3)
        figures[f"{label}_{kind}_p99_ms"] = round(1000 * pct(values, 0.99), 3)
        figures[f"{label}_{kind}_per_s"] = round(len(values) / sum(values), 1)


def ratio(figures: dict[str, object], over: str, under: str) -> float:
    return round(float(figures[over]) / float(figures[under]), 2)  # type: ignore[arg-type]


async def main() -> None:
    ensure_ray(num_cpus=2)
    raw = RawEcho.remote()  # type: ignore[attr-defined]
    raw_async_actor = RawAsyncEcho.remote()  # type: ignore[attr-defined]
    policy = Policy.from_yaml("name: bench\nmessages: [{from: [user, 'user:*'], to: ['*']}]\n")
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

        async def raw_async(text: str) -> object:
            return await raw_async_actor.echo.remote(text)

        async def mesh_off_async(text: str) -> object:
            return await unvetted.send("echo", "aecho", {"text": text}, context_id="bench")

        for label in SIZES:
            hop = {"raw": raw_call, "on": mesh_on, "off": mesh_off}
            if label == "100B":  # the async floor, and an async skill (no worker thread)
                hop |= {"raw_async": raw_async, "off_async_skill": mesh_off_async}
            await measure(figures, label, hop, N[label])
            print(
                f"{label}: raw {figures[f'{label}_raw_p50_ms']} ms, mesh vetting off "
                f"{figures[f'{label}_off_p50_ms']} ms, on {figures[f'{label}_on_p50_ms']} ms (p50)"
            )

        async with (
            serving(lambda base: gateway_app(mesh)) as gateway_base,
            serving(bare_app) as bare_base,
            echo_client(f"{gateway_base}/agents/echo/") as gateway,
            echo_client(f"{bare_base}/") as bare,
        ):
            for label in GATEWAY_SIZES:
                await measure(
                    figures, label, {"gateway": gateway, "bare_a2a": bare}, GATEWAY_N[label]
                )
                print(
                    f"{label}: A2A gateway {figures[f'{label}_gateway_p50_ms']} ms, bare a2a-sdk "
                    f"{figures[f'{label}_bare_a2a_p50_ms']} ms (p50, JSON-RPC over loopback)"
                )
    figures["ratio"] = ratio(figures, "100B_off_p50_ms", "100B_raw_p50_ms")
    figures["ratio_vetting_on"] = ratio(figures, "100B_on_p50_ms", "100B_raw_p50_ms")
    # the same hop for an async skill over an async actor's raw call: what the design costs
    # beyond Ray's own dispatch of an awaiting actor
    figures["ratio_async_floor"] = ratio(
        figures, "100B_off_async_skill_p50_ms", "100B_raw_async_p50_ms"
    )
    figures["gateway_ratio"] = ratio(figures, "100B_gateway_p50_ms", "100B_bare_a2a_p50_ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

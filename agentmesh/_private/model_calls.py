"""Model calls, through one circuit breaker per model in the calling process.

Both paths to a model service go through here: the driver's ``Mesh.generate`` (planners) and an
agent's ``generate`` (its host). A model that keeps failing (crashing backend, dead actor) then
fails fast with BreakerOpenError instead of every caller waiting on it; see
:mod:`agentmesh.breaker`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray.actor import ActorHandle

from agentmesh._private.router import await_ray
from agentmesh.breaker import Breakers, call_through
from agentmesh.inference import GenerateChunk, GenerateRequest, GenerateResponse

__all__ = ["generate", "generate_stream"]


async def generate(
    handle: ActorHandle, name: str, request: GenerateRequest, *, breakers: Breakers | None
) -> GenerateResponse:
    """Run ``request`` on model ``name``'s service; its errors raised typed."""

    async def call() -> GenerateResponse:
        response: GenerateResponse = await await_ray(
            handle.generate.remote(request), what=f"model {name!r}"
        )
        return response

    breaker = breakers.get(f"model:{name}") if breakers is not None else None
    return await call_through(breaker, call)


async def generate_stream(
    handle: ActorHandle, name: str, request: GenerateRequest
) -> AsyncIterator[GenerateChunk]:
    """Stream ``request`` on model ``name``'s service: each chunk as soon as the actor yields it
    (a Ray streaming generator), the last one with the whole response; errors raised typed.

    Not through the breaker: a stream that fails half way has already delivered pieces, so it
    is neither a clean success nor a clean failure to count.
    """
    stream: Any = handle.generate_stream.remote(request)
    async for ref in stream:
        chunk: GenerateChunk = await await_ray(ref, what=f"model {name!r}")
        yield chunk

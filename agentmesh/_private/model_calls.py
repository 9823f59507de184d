"""Model calls, through one circuit breaker per model in the calling process.

Both paths to a model service go through here: the driver's ``Mesh.generate`` (planners) and an
agent's ``generate`` (its host). A model that keeps failing (crashing backend, dead actor) then
fails fast with BreakerOpenError instead of every caller waiting on it; see
:mod:`agentmesh.breaker`.
"""

from __future__ import annotations

from ray.actor import ActorHandle

from agentmesh._private.router import await_ray
from agentmesh.breaker import Breakers, call_through
from agentmesh.inference import GenerateRequest, GenerateResponse

__all__ = ["generate"]


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

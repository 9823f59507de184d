"""Awaiting Ray calls with agentmesh's typed errors: a dead actor, or an error it raised."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from ray.exceptions import RayActorError, RayTaskError

from agentmesh.errors import AgentMeshError, AgentUnavailableError, RunError

__all__ = ["await_ray", "ray_error"]

T = TypeVar("T")


def ray_error(exc: RayTaskError | RayActorError, what: str) -> AgentMeshError:
    """A Ray failure as the agentmesh error it carries, or as a typed run failure."""
    if isinstance(exc, RayActorError):
        return AgentUnavailableError(f"{what}: the actor is dead or unreachable ({exc})")
    cause = exc.cause
    if isinstance(cause, AgentMeshError):
        return cause
    return RunError(f"{what} failed: {type(cause).__name__}: {cause}")


async def await_ray(ref: Awaitable[T], *, what: str) -> T:
    """Await a Ray call; re-raise agentmesh errors as themselves and dead actors as typed."""
    try:
        return await ref
    except (RayTaskError, RayActorError) as exc:
        raise ray_error(exc, what) from None

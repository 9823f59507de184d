"""Coalescing a router's vet calls to one security actor into one Ray call per event-loop turn.

Every skill call costs two vets (the request, then the reply). When the executor starts many
ready nodes at once, or many replies arrive together, one Ray call per vet spends more on
Ray's dispatch (both sides) than on the checks. A :class:`VetBatcher` queues the vets made in
the same event-loop turn and sends them as one ``vet_batch`` call; the security actor runs a
batch's vets one by one, in order, so decisions, rate limits and the audit chain come out as
for separate calls. (Batches, like separate calls, may be served in any order: the security
actor is an async actor.) A lone vet is a batch of one: no waiting, no timer. ``max_batch``
bounds a batch so the stages keep overlapping.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from agentmesh._private.ray_calls import ray_error
from agentmesh._private.turn_batch import TurnBatcher, settle
from agentmesh.errors import AgentMeshError, RunError

if TYPE_CHECKING:
    from agentmesh.security import SecurityMonitor

__all__ = ["VetBatcher", "VetCall", "run_batch"]


@dataclass(frozen=True)
class VetCall:
    """One vet: the monitor's method and its arguments."""

    kind: Literal["message", "reply"]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def run_batch(monitor: SecurityMonitor, calls: list[VetCall]) -> list[Any]:
    """The security actor's side: each call's decision, or the error it raised (which the
    caller re-raises for that call alone: one bad vet does not fail its neighbours)."""
    results: list[Any] = []
    for call in calls:
        method = monitor.vet_message if call.kind == "message" else monitor.vet_reply
        try:
            results.append(method(*call.args, **call.kwargs))
        except Exception as exc:  # returned, not raised: it belongs to one call
            results.append(_as_error(exc))
    return results


def _as_error(exc: Exception) -> AgentMeshError:
    if isinstance(exc, AgentMeshError):
        return exc
    return RunError(f"security actor failed: {type(exc).__name__}: {exc}")


class VetBatcher(TurnBatcher[VetCall, Any]):
    """Queues vets for one security actor on one event loop; see the module docstring."""

    def __init__(self, guard: ActorHandle, *, max_batch: int = 64) -> None:
        super().__init__(max_batch=max_batch)
        self.guard = guard

    async def vet(self, call: VetCall) -> Any:
        """The decision for ``call``; typed errors as a direct Ray call would raise them."""
        return await self.submit(call)

    async def _send(self, items: list[VetCall], futures: list[asyncio.Future[Any]]) -> None:
        try:
            results: list[Any] = await self.guard.vet_batch.remote(items)
        except (RayTaskError, RayActorError) as exc:
            results = [ray_error(exc, "security actor")] * len(futures)
        for future, result in zip(futures, results, strict=True):
            settle(future, result)

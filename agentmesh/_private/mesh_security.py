"""What the mesh asks of all its security actors at once: their records, merged, and resets.

Kept apart from :mod:`agentmesh.mesh` because each of these is the same fan-out over the pool
(every member on every node keeps its own decisions, audit log, quarantine and breakers), merged
into one answer; the mesh's methods of the same names document what they return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ray.actor import ActorHandle

from agentmesh._private.decisions import Decision, QuarantineItem
from agentmesh._private.router import await_ray
from agentmesh.audit import AuditHead

__all__ = ["audit_heads", "decisions", "quarantine", "reset_breaker"]


async def decisions(actors: Iterable[ActorHandle]) -> list[Decision]:
    """Every actor's decisions, in time order (one actor: its own sequence order)."""
    logs: list[list[Decision]] = await asyncio.gather(
        *(await_ray(a.decisions.remote(), what="security actor") for a in actors)
    )
    if len(logs) == 1:
        return logs[0]  # one actor: its own sequence order
    return sorted((d for log in logs for d in log), key=lambda d: d.at)


async def audit_heads(actors: Iterable[ActorHandle]) -> list[AuditHead]:
    """The head of each actor's audit log (an actor without a log has none)."""
    heads: list[AuditHead | None] = await asyncio.gather(
        *(await_ray(a.audit_head.remote(), what="security actor") for a in actors)
    )
    return [h for h in heads if h is not None]


async def quarantine(actors: Iterable[ActorHandle]) -> list[QuarantineItem]:
    """Every actor's quarantined items, in time order."""
    held: list[list[QuarantineItem]] = await asyncio.gather(
        *(await_ray(a.quarantine.remote(), what="security actor") for a in actors)
    )
    return sorted((item for items in held for item in items), key=lambda i: i.at)


async def reset_breaker(actors: Iterable[ActorHandle], principal: str) -> bool:
    """Close ``principal``'s breaker on every actor; True if one was open."""
    closed: list[bool] = await asyncio.gather(
        *(await_ray(a.reset_breaker.remote(principal), what="security actor") for a in actors)
    )
    return any(closed)

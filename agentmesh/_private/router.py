"""Sending a skill call from one principal to an agent, through the security actor.

Used by the driver (the "user" principal: ``Mesh.call`` and the plan executor) and by every
agent's host, so there is one path for messages and the security actor vets each one: the
request before it is delivered, and the reply before the caller sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from a2a.types import Message, Task
from pydantic import JsonValue
from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from agentmesh.errors import (
    AgentMeshError,
    AgentUnavailableError,
    RunError,
    UnknownAgentError,
    UnknownSkillError,
)
from agentmesh.protocols import a2a
from agentmesh.security import raise_for_decision

__all__ = ["Peer", "Router", "await_ray"]

T = TypeVar("T")


@dataclass(frozen=True)
class Peer:
    """One agent as the directory knows it: its actor and its skills' names."""

    handle: ActorHandle
    skills: frozenset[str]


async def await_ray(ref: Awaitable[T], *, what: str) -> T:
    """Await a Ray call; re-raise agentmesh errors as themselves and dead actors as typed."""
    try:
        return await ref
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, AgentMeshError):
            raise cause from None
        raise RunError(f"{what} failed: {type(cause).__name__}: {cause}") from None
    except RayActorError as exc:
        raise AgentUnavailableError(f"{what}: the actor is dead or unreachable ({exc})") from None


class Router:
    """Delivers skill calls for one sender; every hop is vetted by the security actor."""

    def __init__(
        self,
        sender: str,
        directory: Mapping[str, Peer],
        security: ActorHandle | None,
        *,
        vet: bool = True,
    ) -> None:
        self.sender = sender
        self.directory = directory
        self.security = security
        # Only bench/hop.py turns vetting off, to measure the transport alone.
        self.vet = vet

    def peer(self, agent: str, skill: str) -> Peer:
        peer = self.directory.get(agent)
        if peer is None:
            raise UnknownAgentError(agent, known=list(self.directory))
        if skill not in peer.skills:
            raise UnknownSkillError(agent, skill, known=list(peer.skills))
        return peer

    async def send(
        self, agent: str, skill: str, args: dict[str, JsonValue], *, context_id: str
    ) -> tuple[JsonValue, Task]:
        """Call ``agent.skill``; return its result and the A2A task that carried it."""
        peer = self.peer(agent, skill)
        security = self.security
        if security is None and self.vet:
            raise AgentMeshError(f"{self.sender!r} has no security actor yet: nothing is sent")
        message: Message = a2a.skill_call_message(
            sender=self.sender, recipient=agent, skill=skill, args=args, context_id=context_id
        )
        if security is not None and self.vet:
            decision: Any = await await_ray(
                security.vet_message.remote(self.sender, agent, skill, a2a.message_text(message)),
                what="security actor",
            )
            raise_for_decision(decision)
        raw: bytes = await await_ray(
            peer.handle.handle.remote(message.SerializeToString()), what=f"agent {agent!r}"
        )
        task = Task.FromString(raw)
        result = a2a.task_result(task)  # raises the callee's error, typed
        if security is not None and self.vet:
            reply = await await_ray(
                security.vet_reply.remote(agent, self.sender, skill, a2a.task_text(task)),
                what="security actor",
            )
            raise_for_decision(reply)
        return result, task

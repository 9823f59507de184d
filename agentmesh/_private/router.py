"""Sending a skill call from one principal to an agent, through the security actor.

Used by the driver (the "user" principal: ``Mesh.call`` and the plan executor) and by every
agent's host, so there is one path for messages and the security actor vets each one: the
request before it is delivered, and the reply before the caller sees it.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from a2a.types import Message, StreamResponse, Task, TaskState, TaskStatus
from pydantic import JsonValue
from ray.actor import ActorHandle
from ray.exceptions import RayActorError, RayTaskError

from agentmesh._private.call_batch import CallBatcher
from agentmesh._private.decisions import raise_for_decision
from agentmesh._private.idempotency import IdempotencyScope
from agentmesh._private.peer import Peer
from agentmesh._private.ray_calls import await_ray, ray_error
from agentmesh._private.record_events import adopt, note_call, note_decision, note_reply
from agentmesh._private.task_scope import stamp_call
from agentmesh._private.vet_batch import VetBatcher, VetCall
from agentmesh.errors import (
    AgentMeshError,
    AgentUnavailableError,
    SecurityDenied,
    UnknownAgentError,
    UnknownSkillError,
    UnknownTaskError,
    UserError,
)
from agentmesh.grants import ToolGrant
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import error_message, new_id, new_task, status_event
from agentmesh.provenance import Label, message_label

__all__ = ["Peer", "Router", "await_ray", "pool_member", "ray_error"]

T = TypeVar("T")


class Router:
    """Delivers skill calls for one sender; every hop is vetted by the security actor.

    ``send`` waits for the whole task (the fast path between agents); ``stream`` passes the
    task's events on as the agent produces them, vetting each artifact chunk, the whole result
    again before it completes (a payload split over chunks is still seen whole) and an
    input-required question, exactly as ``send`` vets a reply. A refused chunk cancels the task
    at the agent and ends the stream failed, naming the decision. The router remembers which
    skill each of its input-required tasks runs, so an answer need not name it again.
    """

    def __init__(
        self,
        sender: str,
        directory: Mapping[str, Peer],
        security: ActorHandle | None,
        *,
        pool: Sequence[ActorHandle] = (),
        vet: bool = True,
        max_waiting: int = 1024,
    ) -> None:
        self.sender = sender
        self.directory = directory
        self.security = security
        # A security actor pool: each sender's traffic goes to one member (see ``guard``).
        self.pool = list(pool)
        # Only bench/hop.py turns vetting off, to measure the transport alone.
        self.vet = vet
        self.max_waiting = max_waiting
        self._batchers: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, VetBatcher]] = (
            WeakKeyDictionary()
        )
        self._callers: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, CallBatcher]] = (
            WeakKeyDictionary()
        )
        # (agent, task id, sender) -> (skill, replica) of each task that waits for input
        self._asked: OrderedDict[tuple[str, str, str], tuple[str, int]] = OrderedDict()

    def _agent(self, agent: str) -> Peer:
        peer = self.directory.get(agent)
        if peer is None:
            raise UnknownAgentError(agent, known=list(self.directory))
        return peer

    def peer(self, agent: str, skill: str) -> Peer:
        peer = self._agent(agent)
        if skill not in peer.skills:
            raise UnknownSkillError(agent, skill, known=list(peer.skills))
        return peer

    async def send(
        self,
        agent: str,
        skill: str,
        args: dict[str, JsonValue],
        *,
        context_id: str,
        sender: str | None = None,
        task_id: str | None = None,
        label: Label | None = None,
        grant: Sequence[ToolGrant] | None = None,
        idempotency: IdempotencyScope | None = None,
        new_task_id: str | None = None,
        approvals: Sequence[str] = (),
    ) -> tuple[JsonValue, Task]:
        """Call ``agent.skill``; return its result and the A2A task that carried it.

        With ``task_id``, answer that input-required task instead (``skill`` may be empty);
        ``new_task_id`` is the id a new task gets (default: a fresh one), so that the caller
        can cancel it.
        ``label`` is the provenance of ``args`` (None: the sender's own input) and ``grant``
        the plan node's tools (None: not plan-locked); ``idempotency`` the run node the call
        works for (keys its tool calls); ``approvals`` the exact tool calls a human approved
        for it (only the driver's count); all ride in the message.
        Raises the callee's error typed; InputRequired when the task waits for input.
        """
        sender = sender or self.sender
        replica = None
        self._check_security()  # first: an agent not joined yet knows no peers either
        if task_id is not None:
            skill, replica = self._asked_task(agent, task_id, sender)
        peer = self.peer(agent, skill)
        message: Message = a2a.skill_call_message(
            sender=sender,
            recipient=agent,
            skill=skill,
            args=args,
            context_id=context_id,
            task_id=(call_task := task_id or new_task_id or new_id()),
            continues=task_id is not None,
        )
        if label is not None or grant is not None or idempotency is not None or approvals:
            stamp_call(
                message, label=label, grant=grant, idempotency=idempotency, approvals=approvals
            )
        sent = note_call(sender, agent, skill, call_task, args)
        await self._vet_request(sender, agent, skill, message, event=sent)
        with peer.pick(replica) as (replica, handle):
            raw = await self._caller(handle, agent).call(message.SerializeToString())
        task = Task.FromString(raw)
        adopt(a2a.task_events(task), parent=sent)  # what the callee did, under this call
        text = a2a.task_text(task) if self.vet else None  # None: nothing to vet
        where = (agent, replica)
        await self._vet_end(where, sender, skill, task.id, task.status, text, context_id, sent)
        try:
            result = a2a.task_result(task, agent=agent)  # raises the callee's error, typed
        except AgentMeshError as exc:
            note_reply(sender, agent, skill, task.id, parent=sent, error=exc)
            raise
        note_reply(sender, agent, skill, task.id, parent=sent, result=result)
        return result, task

    async def stream(
        self,
        agent: str,
        message: Message,
        *,
        sender: str | None = None,
        task_id: str | None = None,
    ) -> AsyncIterator[StreamResponse]:
        """Send an A2A message (a skill call, or the answer to an input-required task) and
        yield the task's events as they come. Whatever happens past the routing checks ends
        in a final status event, never an exception. ``task_id`` is the id a new task gets
        (default: a fresh one).

        Raises:
            UnknownAgentError / UnknownSkillError / UnknownTaskError / UserError: before any
                task exists (nothing was sent).
        """
        sender = sender or self.sender
        task_id = message.task_id or task_id or new_id()
        replica = None
        if message.task_id:
            skill, replica = self._asked_task(agent, task_id, sender)
        else:
            skill = a2a.named_skill(message) or self._sole_skill(agent)
        peer = self.peer(agent, skill)
        self._check_security()
        stamped = a2a.stamp_message(
            message, sender=sender, recipient=agent, skill=skill, task_id=task_id
        )
        context_id = stamped.context_id
        try:
            await self._vet_request(sender, agent, skill, stamped)
        except SecurityDenied as exc:
            if message.task_id:  # the waiting task is answered by a refusal: it ends here
                await self._cancel_at(peer, task_id, sender, replica=replica)
            else:
                yield new_task(stamped, task_id, skill=skill, streams=False)
            yield _failed(task_id, context_id, exc)
            return
        texts: list[str] = []
        with peer.pick(replica) as (replica, handle):
            try:
                async for event in _events(handle, stamped, agent):
                    if event.HasField("artifact_update"):
                        artifact = event.artifact_update.artifact
                        texts.append(a2a.task_text(Task(artifacts=[artifact])))
                        await self._vet_reply(agent, sender, skill, texts[-1], context_id)
                    elif event.HasField("status_update"):
                        status = event.status_update.status
                        whole = "\n".join(texts) if len(texts) > 1 else None  # one: vetted
                        where = (agent, replica)
                        await self._vet_end(
                            where, sender, skill, task_id, status, whole, context_id
                        )
                    yield event
            except SecurityDenied as exc:
                await self._cancel_at(peer, task_id, sender, replica=replica)
                yield _failed(task_id, context_id, exc)
            except AgentMeshError as exc:  # the actor died or cannot be reached
                yield _failed(task_id, context_id, exc)

    async def cancel(self, agent: str, task_id: str, *, sender: str | None = None) -> None:
        """Cancel the sender's running or waiting task at ``agent``.

        Raises:
            UnknownTaskError: the agent has no open task of that id for this sender.
        """
        sender = sender or self.sender
        peer = self._agent(agent)
        waiting = self._asked.pop((agent, task_id, sender), None)
        replica = waiting[1] if waiting else None  # None: a running task, on any replica
        if not await self._cancel_at(peer, task_id, sender, replica=replica, quiet=False):
            raise UnknownTaskError(task_id, agent=agent)

    # --- internals ---------------------------------------------------------------------------

    def _check_security(self) -> None:
        if self.security is None and not self.pool and self.vet:
            # an agent Ray restarted has not been joined again yet: retried once it is
            raise AgentUnavailableError(
                f"{self.sender!r} has no security actor yet: nothing is sent"
            )

    def _sole_skill(self, agent: str) -> str:
        peer = self._agent(agent)
        if len(peer.skills) != 1:
            raise UserError(f"name the skill of {agent!r} in the message metadata ('skill')")
        return next(iter(peer.skills))

    def guard(self, sender: str) -> ActorHandle | None:
        """The security actor that vets ``sender``'s traffic: one pool member per sender,
        chosen by a stable hash, so the per-sender state the policy keeps (rate limits,
        budgets, circuit breakers) lives in one place."""
        if self.pool:
            return self.pool[pool_member(sender, len(self.pool))]
        return self.security

    def _batcher(self, guard: ActorHandle) -> VetBatcher:
        """The batcher of ``guard`` on the running loop (a router may serve more than one loop
        over its life, e.g. one ``asyncio.run`` after another)."""
        loop = asyncio.get_running_loop()
        batchers = self._batchers.setdefault(loop, {})
        if id(guard) not in batchers:
            batchers[id(guard)] = VetBatcher(guard)
        return batchers[id(guard)]

    def _caller(self, handle: ActorHandle, agent: str) -> CallBatcher:
        """The call batcher of one replica's actor on the running loop."""
        callers = self._callers.setdefault(asyncio.get_running_loop(), {})
        if id(handle) not in callers:
            callers[id(handle)] = CallBatcher(handle, what=f"agent {agent!r}")
        return callers[id(handle)]

    async def _vet_request(
        self, sender: str, agent: str, skill: str, message: Message, *, event: str | None = None
    ) -> None:
        guard = self.guard(sender)
        if guard is not None and self.vet:
            text = a2a.message_text(message)
            call = VetCall(
                "message",
                (sender, agent, skill, text),
                {"label": message_label(message), "context": message.context_id or None},
            )
            decision = await self._batcher(guard).vet(call)
            note_decision(decision, parent=event)
            raise_for_decision(decision)

    async def _vet_reply(
        self,
        agent: str,
        sender: str,
        skill: str,
        text: str,
        context_id: str | None,
        event: str | None = None,
    ) -> None:
        guard = self.guard(sender)
        if guard is not None and self.vet:
            call = VetCall("reply", (agent, sender, skill, text), {"context": context_id or None})
            reply: Any = await self._batcher(guard).vet(call)
            note_decision(reply, parent=event)
            raise_for_decision(reply)

    async def _vet_end(
        self,
        where: tuple[str, int],
        sender: str,
        skill: str,
        task_id: str,
        status: TaskStatus,
        result_text: str | None,
        context_id: str | None,
        event: str | None = None,
    ) -> None:
        """Vet how a task ended, as the reply it is: the result (unless None: nothing left to
        vet), or the question of an input-required task, whose skill and replica (``where``:
        agent, replica) are then remembered."""
        agent, replica = where
        if status.state == TaskState.TASK_STATE_COMPLETED and result_text is not None:
            await self._vet_reply(agent, sender, skill, result_text, context_id, event)
        elif status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            text = a2a.message_text(status.message)
            await self._vet_reply(agent, sender, skill, text, context_id, event)
            self._asked[(agent, task_id, sender)] = (skill, replica)
            while len(self._asked) > self.max_waiting:
                self._asked.popitem(last=False)

    def _asked_task(self, agent: str, task_id: str, sender: str) -> tuple[str, int]:
        """The skill and replica of the sender's task that waits for input at ``agent``."""
        waiting = self._asked.pop((agent, task_id, sender), None)
        if waiting is None:
            raise UnknownTaskError(task_id, agent=agent)
        return waiting

    @staticmethod
    async def _cancel_at(
        peer: Peer, task_id: str, sender: str, *, replica: int | None, quiet: bool = True
    ) -> bool:
        """Cancel at ``replica`` (None: ask every replica; the one holding the task says so)."""
        handles = peer.handles if replica is None else (peer.handles[replica],)
        try:
            found: list[bool] = await asyncio.gather(
                *(await_ray(h.cancel.remote(task_id, sender), what="agent") for h in handles)
            )
        except AgentMeshError:
            if not quiet:
                raise
            return False
        return any(found)


def pool_member(principal: str, size: int) -> int:
    """The index of the security pool member that vets ``principal`` (stable across processes,
    unlike ``hash``)."""
    return zlib.crc32(principal.encode()) % size


def _failed(task_id: str, context_id: str, error: AgentMeshError) -> StreamResponse:
    message = error_message(context_id, task_id, error)
    return status_event(task_id, context_id, TaskState.TASK_STATE_FAILED, message=message)


async def _events(
    handle: ActorHandle, message: Message, agent: str
) -> AsyncIterator[StreamResponse]:
    """The events of the agent's ``stream`` generator, Ray's errors raised typed."""
    what = f"agent {agent!r}"
    try:
        async for ref in handle.stream.remote(message.SerializeToString()):
            raw: bytes = await await_ray(ref, what=what)
            yield StreamResponse.FromString(raw)
    except (RayActorError, RayTaskError) as exc:
        raise ray_error(exc, what) from None

"""The actor body of a remote A2A agent: the same interface as AgentHost, calls over HTTP.

The mesh's router and executor cannot tell it from a local agent: ``handle`` takes a
serialised skill-call message and answers a serialised task (never raises), ``card`` gives the
remote agent's verified card, ``join`` takes the directory and the security actor. The router
vets the call before it gets here and the reply after it leaves, so traffic to and from the
remote agent passes the security actor like any other. See :mod:`agentmesh.remote` for what the
remote agent receives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
import ray
from a2a.client import Client, ClientConfig, create_client
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from pydantic import JsonValue
from ray.actor import ActorHandle

from agentmesh._private.call_batch import Answers, serve_async
from agentmesh._private.router import Peer
from agentmesh.errors import (
    AgentMeshError,
    RemoteAgentError,
    TaskCanceledError,
    UnknownSkillError,
    UserError,
)
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import FINAL_STATES, apply_event, events_of
from agentmesh.provenance import Label, set_part_label
from agentmesh.remote import BINDINGS, RemoteAgent, fetch_card, mesh_name

__all__ = ["RemoteAgentHost", "spawn_remote_host"]

_STOPPED = FINAL_STATES | {TaskState.TASK_STATE_AUTH_REQUIRED}
_POLL_S = 0.25


def _state(task: Task) -> str:
    return TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()


def _parts_result(parts: Any) -> JsonValue | None:
    """The first data part's value, else the text parts joined; None when there is neither."""
    for part in parts:
        if part.WhichOneof("content") == "data":
            return a2a.value_json(part.data)
    texts = [part.text for part in parts if part.WhichOneof("content") == "text"]
    return "\n".join(texts) if texts else None


@dataclass
class _Call:
    """A call in flight: its asyncio task, who sent it, and the remote task once known."""

    job: asyncio.Task[Any]
    sender: str
    remote_task: str = ""
    canceled: bool = False


class RemoteAgentHost:
    """The actor body around one remote A2A agent; the mesh wraps it with ``ray.remote``."""

    def __init__(self, remote: RemoteAgent, card: bytes, *, name: str) -> None:
        self.remote = remote
        self.name = name
        self._raw_card = card
        self._card = AgentCard.FromString(card)
        self._skills = {skill.id for skill in self._card.skills}
        self.directory: dict[str, Peer] = {}
        self.security: ActorHandle | None = None
        self._http: httpx.AsyncClient | None = None
        self._client: Client | None = None
        self._opening = asyncio.Lock()  # concurrent calls share one client
        self._running: dict[str, _Call] = {}

    def node_id(self) -> str:
        """The Ray node this proxy was placed on (its security actor runs there too)."""
        return str(ray.get_runtime_context().get_node_id())

    def join(
        self, directory: Mapping[str, Peer], security: ActorHandle, tool_channel: str | None
    ) -> None:
        """Same as AgentHost.join; a remote agent makes no calls into the mesh, so it only keeps
        them for symmetry."""
        del tool_channel  # a remote agent has no in-mesh tools
        self.directory = dict(directory)
        self.security = security

    def card(self) -> bytes:
        """The remote agent's card, as fetched and verified (signatures kept)."""
        return self._raw_card

    async def close(self) -> None:
        """Close the HTTP connections (a later call opens new ones)."""
        client, http = self._client, self._http
        self._client = self._http = None
        if client is not None:
            await client.close()
        if http is not None:
            await http.aclose()

    async def handle(self, raw: bytes) -> bytes:
        """Serve one skill-call message by calling the remote agent; always answer a task."""

        async def run(call: a2a.SkillCall) -> JsonValue:
            if call.skill not in self._skills:
                raise UnknownSkillError(self.name, call.skill, known=sorted(self._skills))
            if call.text is not None:
                raise UserError("a remote agent's skill takes its arguments as a data part")
            message = a2a.skill_call_message(
                sender=call.sender,
                recipient=call.recipient or self.name,
                skill=call.skill,
                args=call.args,
                context_id=call.context_id,
            )
            job = asyncio.current_task()
            assert job is not None
            self._running[call.task_id] = _Call(job, call.sender)
            try:
                async with asyncio.timeout(self.remote.timeout_s):
                    return await self._call(message, self._running[call.task_id])
            except asyncio.CancelledError:
                if self._running[call.task_id].canceled:
                    raise TaskCanceledError(call.task_id, agent=self.name) from None
                raise
            finally:
                self._running.pop(call.task_id, None)

        def wrap(skill: str, exc: Exception) -> AgentMeshError:
            if isinstance(exc, TimeoutError):
                return self._error(f"no answer to {skill!r} within {self.remote.timeout_s:g}s")
            # the transport's errors: connection refused, HTTP, JSON-RPC
            return self._error(f"{skill!r} failed: {type(exc).__name__}: {exc}")

        answer = Task.FromString(await a2a.answer_skill_call(raw, run, wrap))
        label = Label.remote(self.name)  # whatever it says comes from outside the mesh
        for artifact in answer.artifacts:
            for part in artifact.parts:
                set_part_label(part, label)
        return answer.SerializeToString()

    async def handle_batch(self, raws: list[bytes]) -> AsyncGenerator[Answers, None]:
        """Serve several skill-call messages at once, answers as they finish (see
        ``call_batch``)."""
        async for answers in serve_async(self.handle, raws):
            yield answers

    async def stream(self, raw: bytes) -> AsyncGenerator[bytes, None]:
        """The task as events (the remote task is awaited whole, then replayed)."""
        for event in events_of(Task.FromString(await self.handle(raw))):
            yield event.SerializeToString()

    async def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running call: stop waiting for it and ask the remote agent to
        cancel its task (best effort: it may have finished, or not support cancel)."""
        running = self._running.get(task_id)
        if running is None or running.sender != sender:
            return False
        running.canceled = True
        running.job.cancel()
        if running.remote_task and self._client is not None:
            with contextlib.suppress(Exception):  # the remote's answer changes nothing here
                await self._client.cancel_task(CancelTaskRequest(id=running.remote_task))
        return True

    def _error(self, detail: str, state: str | None = None) -> RemoteAgentError:
        return RemoteAgentError(self.name, self.remote.url, detail, state=state)

    async def _open(self) -> Client:
        async with self._opening:
            if self._client is None:
                self._http = self.remote.http_client()
                bindings = [*BINDINGS]
                config = ClientConfig(httpx_client=self._http, supported_protocol_bindings=bindings)
                self._client = await create_client(self._card, config)
            return self._client

    async def _call(self, message: Message, running: _Call) -> JsonValue:
        client = await self._open()
        task: Task | None = None
        request = SendMessageRequest(message=message)
        stream = cast(AsyncGenerator[StreamResponse, None], client.send_message(request))
        async with contextlib.aclosing(stream):
            async for event in stream:
                if event.HasField("message"):  # a direct answer: no task
                    return self._result(event.message.parts, "message")
                task = apply_event(task, event)
                running.remote_task = task.id
        if task is None:
            raise self._error("the remote agent answered neither a message nor a task")
        while task.status.state not in _STOPPED:  # the stream ended early: poll to the end
            await asyncio.sleep(_POLL_S)
            task = await client.get_task(GetTaskRequest(id=task.id))
        if task.status.state != TaskState.TASK_STATE_COMPLETED:
            said = _parts_result(task.status.message.parts) if task.HasField("status") else None
            raise self._error(str(said or "the task did not complete"), _state(task))
        parts = [part for artifact in task.artifacts for part in artifact.parts]
        return self._result(parts or task.status.message.parts, f"task {task.id}")

    def _result(self, parts: Any, what: str) -> JsonValue:
        result = _parts_result(parts)
        if result is None:
            raise self._error(f"{what} completed with neither a data nor a text part")
        return result


async def spawn_remote_host(
    remote: RemoteAgent, **actor_options: Any
) -> tuple[str, AgentCard, ActorHandle]:
    """Fetch and verify ``remote``'s card (in the caller), then start its proxy actor.

    Returns (mesh name, verified card, actor handle). CardVerificationError, RemoteAgentError
    and ConfigError from the fetch propagate before any actor exists. The proxy only waits on
    the network, so it asks for no CPU unless ``actor_options`` say otherwise.
    """
    card = await fetch_card(remote)
    name = mesh_name(remote, card)
    options: dict[str, Any] = {"num_cpus": 0, **actor_options}
    actor_cls = ray.remote(RemoteAgentHost).options(**options)
    handle = actor_cls.remote(remote, card.SerializeToString(), name=name)
    return name, card, cast(ActorHandle, handle)

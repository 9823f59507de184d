"""What runs inside an agent's Ray actor: the user's plain agent object and the mesh around it.

The host serves A2A skill calls: its :class:`TaskRunner` validates the arguments against the
skill's schema, runs the skill and reports the task, whole (``handle``) or as a stream of
events (``stream``); ``cancel`` stops one. It also gives the agent its :class:`AgentContext`:
calls to other agents (through the router and the security actor), tool calls (run by the
security actor, which holds the MCP sessions) and model calls (through the model services).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from a2a.types import Message, StreamResponse, Task
from pydantic import JsonValue
from ray.actor import ActorHandle

from agentmesh._private.call_batch import Answers, serve_threads
from agentmesh._private.grants import call_key, canonical
from agentmesh._private.model_router import ModelRouter
from agentmesh._private.record_events import note_model_call, note_tool_call
from agentmesh._private.replay_tape import served_model, served_tool
from agentmesh._private.router import Peer, Router, await_ray
from agentmesh._private.skill_invoke import CONTEXT_ID
from agentmesh._private.task_runner import TaskRunner
from agentmesh._private.task_scope import SCOPE
from agentmesh._private.tool_channel import ToolChannelClient
from agentmesh.agent import Agent
from agentmesh.breaker import BreakerPolicy, Breakers
from agentmesh.errors import (
    AgentMeshError,
    AgentUnavailableError,
    ApprovalRequired,
    UnknownModelError,
)
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.models import Usage
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import apply_event
from agentmesh.protocols.mcp import ToolInfo, ToolResult
from agentmesh.provenance import Label, task_label

__all__ = ["CONTROL_THREADS", "DEFAULT_SLOTS", "AgentHost", "host_slots"]


class _HostContext:
    """The AgentContext the host binds to its agent."""

    def __init__(self, host: AgentHost) -> None:
        self._host = host

    async def call(self, agent: str, skill: str, args: dict[str, JsonValue]) -> JsonValue:
        context_id = CONTEXT_ID.get(uuid.uuid4().hex)
        scope = SCOPE.get(None)  # the call carries the task's label and (unwidened) grant
        nested = scope.idempotency if scope else None  # and its run node, a level deeper
        result, task = await self._host.router.send(
            agent,
            skill,
            args,
            context_id=context_id,
            label=scope.label if scope else None,
            grant=scope.grant if scope else None,
            idempotency=nested.child(agent, skill, args) if nested else None,
        )
        if scope is not None:
            scope.absorb(task_label(task) or Label.unknown(f"agent:{agent}"))
            if (used := a2a.task_usage(task)) is not None:  # the callee's model calls count
                scope.usage.merge(Usage.model_validate(used))
        return result

    async def use_tool(self, tool: str, args: dict[str, JsonValue]) -> ToolResult:
        scope = SCOPE.get(None)
        extras: dict[str, Any] = {}
        key = call_key(tool, canonical(args))
        if scope is not None:
            # counted before the replay below: a rerun of the task counts the same calls
            effect = scope.idempotency.key(tool, args) if scope.idempotency else None
            replayed = scope.replay(key)  # a resumed task does not repeat what it did
            if replayed is not None:
                scope.absorb(replayed.label or Label.tool(tool))
                note_tool_call(self._host.name, tool, args, None, result=replayed)
                return replayed
            extras = scope.tool_extras(key)
            if effect is not None:
                extras["idempotency"] = effect
        replay = await served_tool(scope, self._host.name, tool, args)
        if replay is not None:  # the security actor vets it, then serves what was recorded
            extras["replay"] = replay
        from_tape = replay is not None and replay.served
        started = time.perf_counter()
        try:
            if self._host.tools is not None:  # the node-local socket: same checks, no Ray hop
                result = await self._host.tools.call(self._host.name, tool, args, **extras)
            else:
                result = await await_ray(
                    self._host.security.call_tool.remote(self._host.name, tool, args, **extras),
                    what="security actor",
                )
        except ApprovalRequired as exc:
            exc.arguments = dict(args)  # for the question the task puts to the user
            note_tool_call(self._host.name, tool, args, started, error=exc, replayed=from_tape)
            raise
        except AgentMeshError as exc:
            note_tool_call(self._host.name, tool, args, started, error=exc, replayed=from_tape)
            raise
        note_tool_call(self._host.name, tool, args, started, result=result, replayed=from_tape)
        if scope is not None:
            scope.absorb(result.label or Label.tool(tool))
            scope.record(key, result)
        return result

    async def list_tools(self) -> list[ToolInfo]:
        tools: list[ToolInfo] = await await_ray(
            self._host.security.tools_for.remote(self._host.name), what="security actor"
        )
        return tools

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None,
        max_tokens: int,
        system: str | None,
        stop: list[str],
        json_schema: dict[str, JsonValue] | None,
    ) -> GenerateResponse:
        name = model or self._host.agent.model
        models = self._host.models
        if name is None or not models.knows(name):
            raise UnknownModelError(
                f"agent {self._host.name!r} asked for model {name!r}; the mesh has {models.names()}"
            )
        request = GenerateRequest(
            prompt=prompt, system=system, max_tokens=max_tokens, stop=stop, json_schema=json_schema
        )
        scope = SCOPE.get(None)  # the task's usage counts the call; its label the output
        usage = scope.usage if scope is not None else None
        started = time.perf_counter()
        served = await served_model(scope, self._host.name, name, request, models)
        from_tape = served is not None
        try:
            if served is not None:  # a replay: the recorded answer
                response = served.answer()
            else:
                response = await models.generate(
                    name, request, breakers=self._host.breakers, usage=usage
                )
        except AgentMeshError as exc:
            note_model_call(self._host.name, name, request, started, error=exc, replayed=from_tape)
            raise
        note_model_call(
            self._host.name, name, request, started, response=response, replayed=from_tape
        )
        response.label = scope.label if scope is not None else None
        return response


class _Fold:
    """An emit that folds a task's events into the task (for ``handle``)."""

    def __init__(self) -> None:
        self.task: Task | None = None

    def __call__(self, event: StreamResponse) -> None:
        if self.task is None and event.HasField("task"):
            self.task = event.task  # the event is ours alone: no copy needed
        else:
            self.task = apply_event(self.task, event)


#: Skill calls one replica runs at once unless its class says otherwise (``max_concurrency``):
#: each holds one of the actor's Ray threads (a sync skill runs on it, an async one waits on it).
#: Ray makes them all at start, and they cost every call: with 1,000 (an async actor's default)
#: a fan-out of 1,000 no-op nodes took 2.8 ms a node and a chain 14.5 ms, with 32 1.2 and 7.4.
DEFAULT_SLOTS = 32
#: Threads kept free of skills for the calls that manage them (cancel, card, join, probes).
CONTROL_THREADS = 4


def host_slots(cls: type[Agent]) -> int:
    """How many skill calls one replica of ``cls`` runs at once."""
    return cls.max_concurrency or DEFAULT_SLOTS


class AgentHost:
    """The actor body around one agent; the mesh wraps it with ``ray.remote`` as a threaded
    actor (sync methods, ``max_concurrency``): Ray's dispatch of a sync call costs less than an
    async actor's, and a sync skill then needs no event loop at all. Async skills, and the
    agent's calls to other agents, tools and models, run on the host's own event loop thread.
    """

    def __init__(
        self,
        agent_cls: type[Agent],
        *,
        models: ModelRouter,
        breaker: BreakerPolicy | None = None,
    ) -> None:
        self.agent = agent_cls()
        self.name = agent_cls.name
        self.models = models
        self.breakers = Breakers(breaker)  # one per model this agent calls
        self.directory: dict[str, Peer] = {}
        self.router = Router(self.name, self.directory, None)
        self.tools: ToolChannelClient | None = None
        self.runner = TaskRunner(self.agent)
        # the actor has a few threads more than this, so a cancel always finds one free
        self._slots = threading.BoundedSemaphore(host_slots(agent_cls))
        # the threads a batch's calls run on (``handle_batch``); made as calls need them
        self._pool = ThreadPoolExecutor(host_slots(agent_cls), thread_name_prefix=self.name)
        self.loop = asyncio.new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name=f"agentmesh-{self.name}-loop", daemon=True
        ).start()
        self.agent.bind(_HostContext(self))

    @property
    def security(self) -> ActorHandle:
        if self.router.security is None:  # or Ray restarted it: the mesh joins it again
            raise AgentUnavailableError(f"agent {self.name!r} has not joined its mesh yet")
        return self.router.security

    def joined(self) -> bool:
        """Whether the mesh has joined this agent (False after Ray restarted its actor)."""
        return self.router.security is not None

    def node_id(self) -> str:
        """The Ray node this agent was placed on (its security actor runs there too)."""
        return str(ray.get_runtime_context().get_node_id())

    def join(
        self, directory: Mapping[str, Peer], security: ActorHandle, tool_channel: str | None
    ) -> None:
        """Tell the agent who else is in the mesh, which security actor guards its node, and
        the socket that actor answers tool calls on."""
        self.directory.clear()
        self.directory.update(directory)
        self.router.security = security
        self.tools = ToolChannelClient(tool_channel) if tool_channel else None

    def handle(self, raw: bytes) -> bytes:
        """Serve one A2A skill-call message; answer the finished (or waiting) task, never raise.

        A plain sync skill runs right here, in the Ray thread that took the call (the fast
        path: no event loop on the way); anything else runs on the host's event loop. The call
        first waits for a free slot (the agent's ``max_concurrency``).
        """
        fold = _Fold()
        task = self.runner.begin(Message.FromString(raw), fold, progress=False)
        # claimed before it waits for a slot: a cancel while it waits still finds it
        with self._slots:
            if task is not None and task.inline:
                self.runner.finish_inline(task, fold)
            elif task is not None:
                job = self.runner.finish(task, fold)
                asyncio.run_coroutine_threadsafe(job, self.loop).result()
        assert fold.task is not None  # a task always ends with a status event
        return fold.task.SerializeToString()

    def handle_batch(self, raws: list[bytes]) -> Iterator[Answers]:
        """Serve several skill-call messages at once (``call_batch.CallBatcher`` sends them),
        as a Ray streaming generator of answers as they finish."""
        yield from serve_threads(self._pool, self.handle, raws)

    def stream(self, raw: bytes) -> Iterator[bytes]:
        """Serve one skill-call message as a stream of serialised A2A events (a Ray streaming
        generator). The task runs on the host's event loop; if the stream is closed early (the
        caller canceled it), so is the task."""
        events: queue.SimpleQueue[StreamResponse | None] = queue.SimpleQueue()
        job = asyncio.run_coroutine_threadsafe(
            self.runner.run(Message.FromString(raw), events.put), self.loop
        )
        job.add_done_callback(lambda _: events.put(None))
        try:
            while (event := events.get()) is not None:
                yield event.SerializeToString()
        finally:
            job.cancel()  # thread-safe; a no-op once the task is done

    def cancel(self, task_id: str, sender: str) -> bool:
        """Cancel ``sender``'s running or input-waiting task ``task_id``; False if none."""
        return self.runner.cancel(task_id, sender)

    def card(self) -> bytes:
        """This agent's A2A Agent Card, serialised."""
        return a2a.build_agent_card(type(self.agent)).SerializeToString()

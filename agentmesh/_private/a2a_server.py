"""The a2a-sdk pieces of the gateway: executor, guarded request handler, owned task store.

- ``MeshAgentExecutor`` sends each message through ``Mesh.stream`` (the in-mesh path) and
  hands its events to the SDK; a failure's status message carries only the error's type and
  its outside text (a security denial names its rule, never the refused content; anything
  unexpected is an ``InternalError`` without details).
- ``GatewayRequestHandler`` refuses a message that is not a call its identity may make before
  any task exists (invalid params).
- ``OwnedTaskStore`` records each task's owner; for anyone else the task does not exist.
- ``ScrubbingJsonRpcDispatcher`` keeps exception text out of JSON-RPC error responses.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event, EventQueue
from a2a.server.jsonrpc_models import InternalError as RpcInternalError
from a2a.server.jsonrpc_models import JSONRPCError
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types import (
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import A2AError, InternalError, InvalidParamsError, TaskNotFoundError
from google.protobuf import struct_pb2

from agentmesh._private.a2a_calls import CallRefused, Grants, SkillTable, resolve_call
from agentmesh.errors import AgentMeshError, outside_text
from agentmesh.mesh import Mesh
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import RECORD, TERMINAL_STATES, struct_of

__all__ = [
    "GatewayRequestHandler",
    "MeshAgentExecutor",
    "OwnedTaskStore",
    "ScrubbingJsonRpcDispatcher",
    "grants_of",
]

logger = logging.getLogger("agentmesh.a2a_gateway")


def grants_of(context: ServerCallContext) -> Grants | None:
    """The authenticated identity's grants (the middleware puts them in ``scope["auth"]``)."""
    grants = context.state.get("auth")
    return grants if isinstance(grants, Grants) else None


def _owner(context: ServerCallContext) -> str:
    grants = grants_of(context)
    return grants.name if grants is not None else ""


def _error_meta(kind: str, text: str) -> struct_pb2.Struct:
    return struct_of({"agentmesh": {"error": {"type": kind, "message": text}}})


class MeshAgentExecutor(AgentExecutor):
    """One mesh agent as an a2a-sdk agent: a message goes through ``Mesh.stream`` (the same
    path as in-mesh callers) and its events go to the SDK unchanged, so the task's states and
    artifacts are the mesh's own. The caller's identity is the mesh principal
    ``user:<identity>``. A result whose artifacts outgrow ``max_artifact_bytes`` is canceled
    at the agent and the task fails (nothing is truncated silently)."""

    def __init__(self, mesh: Mesh, table: SkillTable, *, max_artifact_bytes: int) -> None:
        self.mesh = mesh
        self.table = table
        self.max_artifact_bytes = max_artifact_bytes

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        grants = grants_of(context.call_context)
        fresh = context.current_task is None
        size = 0
        try:
            if grants is None or context.message is None:
                raise CallRefused("not authenticated")
            message = Message()
            message.CopyFrom(context.message)
            message.context_id = context_id
            message.task_id = "" if fresh else task_id
            principal, agent = f"user:{grants.name}", self.table.agent
            events = self.mesh.stream(agent, message, principal=principal, task_id=task_id)
            async for event in events:
                if event.HasField("artifact_update"):
                    size += event.artifact_update.artifact.ByteSize()
                    if size > self.max_artifact_bytes:
                        with contextlib.suppress(AgentMeshError):
                            await self.mesh.cancel(agent, task_id, principal=principal)
                        raise ResultTooLarge(self.max_artifact_bytes)
                payload = event.WhichOneof("payload")
                if payload is not None:
                    fresh = False
                    await event_queue.enqueue_event(_outside(getattr(event, payload)))
        except CallRefused as exc:  # the handler checks first; this is the second line
            await self._fail(event_queue, task_id, context_id, fresh, "CallRefused", exc.reason)
        except ResultTooLarge as exc:
            await self._fail(event_queue, task_id, context_id, fresh, "ResultTooLarge", str(exc))
        except AgentMeshError as exc:  # refused before any task existed at the agent
            logger.info("A2A call to %s refused: %s", self.table.agent, type(exc).__name__)
            await self._fail(
                event_queue, task_id, context_id, fresh, type(exc).__name__, outside_text(exc)
            )
        except Exception:
            logger.exception("A2A call to %s raised an unexpected error", self.table.agent)
            text = "InternalError: the call failed"
            await self._fail(event_queue, task_id, context_id, fresh, "InternalError", text)

    @staticmethod
    async def _fail(
        queue: EventQueue, task_id: str, context_id: str, fresh: bool, kind: str, text: str
    ) -> None:
        if fresh:  # the SDK needs a Task before any status update
            task = Task(id=task_id, context_id=context_id)
            task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
            await queue.enqueue_event(task)
        updater = TaskUpdater(queue, task_id, context_id)
        message = updater.new_agent_message([Part(text=text)])
        message.metadata.CopyFrom(_error_meta(kind, text))
        await updater.failed(message)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the task at the agent (a running skill is stopped), then mark it canceled."""
        grants = grants_of(context.call_context)
        task_id = str(context.task_id)
        if grants is not None:
            with contextlib.suppress(AgentMeshError):  # finished meanwhile: nothing to stop
                await self.mesh.cancel(self.table.agent, task_id, principal=f"user:{grants.name}")
        await TaskUpdater(event_queue, task_id, str(context.context_id)).cancel()


def _outside(event: Any) -> Any:
    """The event as a client outside the mesh may see it: without the mesh's flight-recorder
    events (what the agents did inside: prompts, tool calls, decisions), and a failure's
    status message rewritten to its outside text (a security denial names its rule, never
    what it refused), keeping only the error's type and that text."""
    if isinstance(event, Task | TaskStatusUpdateEvent) and RECORD in event.metadata.fields:
        del event.metadata.fields[RECORD]
    if not (
        isinstance(event, TaskStatusUpdateEvent)
        and event.status.state == TaskState.TASK_STATE_FAILED
    ):
        return event
    error = a2a.status_error(event.status)
    text, kind = outside_text(error), type(error).__name__
    message = event.status.message
    del message.parts[:]
    message.parts.append(Part(text=text))
    message.metadata.CopyFrom(_error_meta(kind, text))
    return event


class ResultTooLarge(Exception):
    """A task's artifacts outgrew the gateway's bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the result exceeds the gateway's bound of {limit} bytes per task")


class GatewayRequestHandler(DefaultRequestHandler):
    """The SDK's handler, refusing messages that are not calls the caller may make."""

    def __init__(self, *, table: SkillTable, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    def _check(self, params: SendMessageRequest, context: ServerCallContext) -> None:
        grants = grants_of(context)
        if grants is None:
            raise InvalidParamsError(message="not authenticated")
        try:
            resolve_call(params.message, self.table, grants)
        except CallRefused as exc:
            raise InvalidParamsError(message=exc.reason) from None

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Message | Task:
        self._check(params, context)
        return await super().on_message_send(params, context)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        self._check(params, context)
        async for event in super().on_message_send_stream(params, context):
            yield event


class OwnedTaskStore(TaskStore):
    """Tasks kept per owner, and bounded: a task belongs to the identity that created it.

    Every task id is recorded with its owner; a lookup, cancel or subscribe by anyone else (or
    by nobody) finds nothing, exactly as for an id that never existed. So that a stream of
    requests cannot grow the gateway without limit, each task keeps only its last
    ``max_history`` messages, finished tasks expire ``ttl_s`` after their last update, and an
    owner keeps at most ``max_finished_per_owner`` finished tasks (the oldest go first). Tasks
    still running are never evicted.
    """

    def __init__(
        self, *, ttl_s: float = 3600.0, max_finished_per_owner: int = 1000, max_history: int = 50
    ) -> None:
        self._inner = InMemoryTaskStore(owner_resolver=_owner)
        self._owners: dict[str, str] = {}
        self._finished: dict[str, dict[str, float]] = {}  # owner -> task id -> finished at
        self.ttl_s = ttl_s
        self.max_finished_per_owner = max_finished_per_owner
        self.max_history = max_history

    async def save(self, task: Task, context: ServerCallContext) -> None:
        owner = _owner(context)
        if not owner or self._owners.setdefault(task.id, owner) != owner:
            raise TaskNotFoundError
        if len(task.history) > self.max_history:
            kept = list(task.history)[-self.max_history :]
            del task.history[:]
            task.history.extend(kept)
        await self._inner.save(task, context)
        if task.status.state in TERMINAL_STATES:
            self._finished.setdefault(owner, {})[task.id] = time.monotonic()
        await self._evict(owner, context)

    async def _evict(self, owner: str, context: ServerCallContext) -> None:
        finished = self._finished.get(owner, {})
        now = time.monotonic()
        expired = [tid for tid, at in finished.items() if now - at > self.ttl_s]
        overflow = max(0, len(finished) - len(expired) - self.max_finished_per_owner)
        live = [tid for tid in finished if tid not in expired]  # oldest first (insertion order)
        for task_id in expired + live[:overflow]:
            await self._inner.delete(task_id, context)
            finished.pop(task_id, None)
            self._owners.pop(task_id, None)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        owner = _owner(context)
        if not owner or self._owners.get(task_id) != owner:
            return None
        return await self._inner.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        if not _owner(context):
            return ListTasksResponse()
        return await self._inner.list(params, context)  # the inner store scopes by owner

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        owner = _owner(context)
        if owner and self._owners.get(task_id) == owner:
            await self._inner.delete(task_id, context)
            del self._owners[task_id]
            self._finished.get(owner, {}).pop(task_id, None)


_RPC_MESSAGES = {
    -32700: "Parse error",
    -32600: "Invalid Request",
    -32601: "Method not found",
    -32602: "Invalid params",
}


def _scrub(error: Exception | JSONRPCError | A2AError) -> JSONRPCError | A2AError:
    """The error without exception text: internal errors and parse details become generic."""
    if isinstance(error, JSONRPCError):
        if error.code == RpcInternalError().code:
            return RpcInternalError()
        if error.data is None and error.code != -32700:
            return error
        return JSONRPCError(code=error.code, message=_RPC_MESSAGES.get(error.code, "Error"))
    if not isinstance(error, A2AError) or isinstance(error, InternalError):
        return InternalError()
    if isinstance(error.data, dict) and "parseError" in error.data:
        return type(error)()
    return error


class ScrubbingJsonRpcDispatcher(JsonRpcDispatcher):
    """The SDK's JSON-RPC dispatcher, minus exception text in its error responses."""

    def _generate_error_response(
        self, request_id: str | int | None, error: Exception | JSONRPCError | A2AError
    ) -> Any:
        return super()._generate_error_response(request_id, _scrub(error))

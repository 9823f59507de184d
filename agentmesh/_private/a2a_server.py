"""The a2a-sdk pieces of the gateway: executor, guarded request handler, owned task store.

- ``MeshAgentExecutor`` runs one skill call through ``Mesh.call`` and reports the task with
  ``TaskUpdater``: submitted -> working -> ``result`` artifact -> completed, or failed with a
  status message naming the agentmesh error type (a security denial names its rule, never the
  refused content; anything else is an ``InternalError`` without details).
- ``GatewayRequestHandler`` refuses a message that is not a call its identity may make before
  any task exists (invalid params).
- ``OwnedTaskStore`` records each task's owner; for anyone else the task does not exist.
- ``ScrubbingJsonRpcDispatcher`` keeps exception text out of JSON-RPC error responses.
"""

from __future__ import annotations

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
)
from a2a.utils.errors import A2AError, InternalError, InvalidParamsError, TaskNotFoundError
from google.protobuf import json_format, struct_pb2
from pydantic import JsonValue

from agentmesh._private.a2a_calls import CallRefused, Grants, SkillTable, resolve_call
from agentmesh.errors import AgentMeshError, outside_text
from agentmesh.mesh import Mesh

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


def _value(data: JsonValue) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(data, struct)
    return struct


class MeshAgentExecutor(AgentExecutor):
    """One mesh agent as an a2a-sdk agent: each message is one ``mesh.call``."""

    def __init__(self, mesh: Mesh, table: SkillTable) -> None:
        self.mesh = mesh
        self.table = table

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:  # the SDK needs a Task before any status update
            task = Task(id=task_id, context_id=context_id)
            task.status.CopyFrom(TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
            if context.message is not None:
                task.history.append(context.message)
            await event_queue.enqueue_event(task)
        await updater.start_work()
        grants = grants_of(context.call_context)
        try:
            if grants is None or context.message is None:
                raise CallRefused("not authenticated")
            call = resolve_call(context.message, self.table, grants)
            result = await self.mesh.call(self.table.agent, call.skill, **call.args)
            parts = [Part(data=_value(result), media_type="application/json")]
        except CallRefused as exc:  # the handler checks first; this is the second line
            await self._fail(updater, "CallRefused", exc.reason)
        except AgentMeshError as exc:
            logger.info("A2A call to %s failed: %s", self.table.agent, type(exc).__name__)
            await self._fail(updater, type(exc).__name__, outside_text(exc))
        except Exception:
            logger.exception("A2A call to %s raised an unexpected error", self.table.agent)
            await self._fail(updater, "InternalError", "InternalError: the call failed")
        else:
            await updater.add_artifact(parts, name="result")
            await updater.complete()

    @staticmethod
    async def _fail(updater: TaskUpdater, kind: str, text: str) -> None:
        meta = _struct({"agentmesh": {"error": {"type": kind, "message": text}}})
        message = updater.new_agent_message([Part(text=text)])
        message.metadata.CopyFrom(meta)
        await updater.failed(message)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # the skill call cannot be stopped once sent; the task is marked canceled
        updater = TaskUpdater(event_queue, str(context.task_id), str(context.context_id))
        await updater.cancel()


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


_FINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)


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
        if task.status.state in _FINAL_STATES:
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

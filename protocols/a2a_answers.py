"""Answers to skill calls as A2A tasks: how the mesh writes a task and reads its result.

A call ends as a ``Task``: completed with one ``result`` artifact, or failed with a status
message that carries the error's type and fields, so the caller re-raises the same agentmesh
error. Kept apart from the calls (:mod:`agentmesh.protocols.a2a_messages`) because this is the
answer half of the wire format, and the side that turns a task back into a value or an error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from a2a.types import Artifact, Message, Part, Task, TaskState, TaskStatus
from pydantic import JsonValue

from agentmesh import errors
from agentmesh.protocols.a2a_messages import SkillCall, parse_skill_call, part_text
from agentmesh.protocols.a2a_tasks import (
    META_KEY,
    RECORD,
    RESULT_ARTIFACT,
    TIMING,
    USAGE,
    error_message,
    new_id,
    struct_json,
    struct_of,
    task_status,
    to_value,
    value_json,
)

__all__ = [
    "answer_skill_call",
    "completed_task",
    "failed_task",
    "status_error",
    "task_events",
    "task_result",
    "task_text",
    "task_timing",
    "task_usage",
]


def completed_task(
    request: Message,
    result: JsonValue,
    *,
    started_at: float,
    ended_at: float,
    task_id: str | None = None,
) -> Task:
    """The completed task answering ``request``, its result in one ``result`` artifact."""
    return Task(
        id=task_id or new_id(),
        context_id=request.context_id,
        status=task_status(TaskState.TASK_STATE_COMPLETED),
        artifacts=[
            Artifact(
                artifact_id=new_id(),
                name="result",
                parts=[Part(data=to_value(result), media_type="application/json")],
            )
        ],
        history=[request],
        metadata=struct_of({TIMING: {"started_at": started_at, "ended_at": ended_at}}),
    )


def failed_task(
    request: Message,
    error: BaseException,
    *,
    started_at: float,
    ended_at: float | None = None,
    task_id: str | None = None,
) -> Task:
    """A failed task whose status message names the error type and keeps its fields."""
    task_id = task_id or new_id()
    return Task(
        id=task_id,
        context_id=request.context_id,
        status=task_status(
            TaskState.TASK_STATE_FAILED, error_message(request.context_id, task_id, error)
        ),
        history=[request],
        metadata=struct_of(
            {TIMING: {"started_at": started_at, "ended_at": ended_at or time.time()}}
        ),
    )


async def answer_skill_call(
    raw: bytes,
    run: Callable[[SkillCall], Awaitable[JsonValue]],
    wrap: Callable[[str, Exception], errors.AgentMeshError],
) -> bytes:
    """Decode a serialised skill-call message, run it, and answer with a serialised task.

    Never raises: an agentmesh error fails the task as it is, any other exception is first
    turned into one by ``wrap(skill, exc)``. For agents that answer whole tasks (remote-agent
    proxies); local agents run the events of :mod:`agentmesh.protocols.a2a_tasks`.
    """
    started = time.time()
    request = Message.FromString(raw)
    skill, task_id = "?", None
    try:
        call = parse_skill_call(request)
        skill, task_id = call.skill, call.task_id or None
        if call.continues:
            raise errors.UnknownTaskError(call.task_id, agent=call.recipient)
        result = await run(call)
    except errors.AgentMeshError as exc:
        error = exc
    except Exception as exc:
        error = wrap(skill, exc)
    else:
        return completed_task(
            request, result, started_at=started, ended_at=time.time(), task_id=task_id
        ).SerializeToString()
    task = failed_task(request, error, started_at=started, task_id=task_id)
    if isinstance(error, errors.TaskCanceledError):
        task.status.state = TaskState.TASK_STATE_CANCELED
    return task.SerializeToString()


def task_text(task: Task) -> str:
    """Everything a task's artifacts say, as text, for the security scanner."""
    return "\n".join(part_text(part) for artifact in task.artifacts for part in artifact.parts)


def task_usage(task: Task) -> dict[str, JsonValue] | None:
    """The model usage the agent recorded for the task (``agentmesh.models.Usage`` as JSON),
    or None if it made no model call."""
    if USAGE not in task.metadata.fields:
        return None
    usage: dict[str, JsonValue] = struct_json(task.metadata)[USAGE]
    return usage


def task_events(task: Task) -> list[dict[str, JsonValue]]:
    """The events the agent recorded for the task (``agentmesh.recording.RunEvent`` as JSON)."""
    if RECORD not in task.metadata.fields:
        return []
    events: list[dict[str, JsonValue]] = struct_json(task.metadata)[RECORD]
    return events


def task_timing(task: Task) -> tuple[float | None, float | None]:
    """(started_at, ended_at) as the agent recorded them."""
    meta = struct_json(task.metadata).get(TIMING) or {}
    return meta.get("started_at"), meta.get("ended_at")


def task_result(task: Task, *, agent: str = "") -> JsonValue:
    """The result of a completed task, or raise what stopped it.

    A streaming skill's result is the list of its chunks. An input-required task raises
    :class:`~agentmesh.InputRequired` (with ``agent``, ``skill`` and ``task_id`` to answer it),
    a canceled one :class:`~agentmesh.TaskCanceledError`, a failed one the error it carries.
    """
    state = task.status.state
    if state == TaskState.TASK_STATE_COMPLETED:
        parts = [p for a in task.artifacts if a.name == RESULT_ARTIFACT for p in a.parts]
        meta = task.metadata.fields.get(META_KEY)
        streamed = meta is not None and meta.struct_value.fields.get("stream")
        if streamed and streamed.bool_value:
            return [value_json(part.data) for part in parts]
        if parts:
            return value_json(parts[0].data)
        raise errors.RunError(f"task {task.id} completed without a result artifact")
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        ask = struct_json(task.status.message.metadata).get(META_KEY, {}).get("input") or {}
        prompt = str(ask.get("prompt") or _first_text(task.status.message) or "input required")
        raise errors.InputRequired(
            prompt,
            field=ask.get("field"),
            agent=agent,
            skill=str(ask.get("skill") or ""),
            task_id=task.id,
            tool=ask.get("tool"),
            approval=ask.get("approval"),
        )
    if state == TaskState.TASK_STATE_CANCELED:
        raise errors.TaskCanceledError(task.id, agent=agent)
    raise status_error(task.status)


def _first_text(message: Message) -> str:
    return next((p.text for p in message.parts if p.WhichOneof("content") == "text"), "")


def status_error(status: TaskStatus) -> errors.AgentMeshError:
    """The agentmesh error a failed task's status carries (a RunError if it names none)."""
    meta = struct_json(status.message.metadata).get(META_KEY) or {}
    detail = meta.get("error") or {}
    cls = getattr(errors, str(detail.get("type")), None)
    message = str(detail.get("message") or _first_text(status.message) or "the task failed")
    if not (isinstance(cls, type) and issubclass(cls, errors.AgentMeshError)):
        return errors.RunError(message)
    fields = dict(detail.get("fields") or {})
    if issubclass(cls, errors.SecurityDenied) and isinstance(fields.get("decision"), dict):
        from agentmesh._private.decisions import Decision

        fields["decision"] = Decision.model_validate(fields["decision"])
    error: errors.AgentMeshError = errors._restore(cls, (message,), {"message": message, **fields})
    return error

"""A2A tasks as streams of events, the same inside the mesh and at its edge.

An agent answers a skill call with events, in the order the A2A spec gives them: the new
``Task`` (submitted), a ``working`` status update, artifact updates as the result is produced
(one ``result`` artifact; a streaming skill appends one part per chunk), and one final status
update: ``completed``, ``failed`` (the status message names the error), ``input-required`` (the
agent's question) or ``canceled``. :func:`apply_event` folds events into the task a client sees,
so a caller that waits for the whole task and one that streams see the same thing.

Events cross Ray as serialised ``StreamResponse`` messages, exactly the envelope of A2A's
streaming responses, so the gateway hands them to the a2a-sdk unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import JsonValue

from agentmesh import errors

__all__ = [
    "FINAL_STATES",
    "META_KEY",
    "RECORD",
    "RESULT_ARTIFACT",
    "TERMINAL_STATES",
    "TIMING",
    "USAGE",
    "apply_event",
    "artifact_event",
    "error_message",
    "events_of",
    "input_message",
    "json_part",
    "new_id",
    "new_task",
    "state_name",
    "status_event",
    "struct_json",
    "struct_of",
    "task_status",
    "to_value",
    "value_json",
]

#: The metadata key under which the mesh keeps its own fields (messages, parts and tasks).
META_KEY = "agentmesh"
_META = META_KEY
#: The task metadata key of the agent's own timing of a task (seconds since the epoch).
TIMING = "agentmesh.timing"
#: The task's model usage (``agentmesh.models.Usage`` as JSON), on its final status.
USAGE = "agentmesh.usage"
#: The task's recorded events (``agentmesh.recording.RunEvent`` as JSON), on its final status.
RECORD = "agentmesh.record"
#: The name of the artifact that carries a skill's result.
RESULT_ARTIFACT = "result"
#: States after which a task never changes again.
TERMINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
#: States that end one exchange: the terminal ones, and input-required (the task waits).
FINAL_STATES = TERMINAL_STATES | {TaskState.TASK_STATE_INPUT_REQUIRED}


def to_value(data: JsonValue) -> struct_pb2.Value:
    """JSON as a protobuf ``Value`` (an A2A data part), built with protobuf's own setters:
    several times faster than ``json_format``, which matters on every hop."""
    value = struct_pb2.Value()
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        value.struct_value.SetInParent()  # so that {} is an object, not an unset value
        value.struct_value.update(data)
    elif isinstance(data, list | tuple):
        value.list_value.SetInParent()
        value.list_value.extend(data)
    else:
        raise TypeError(f"not JSON: {type(data).__name__}")
    return value


def value_json(value: struct_pb2.Value) -> JsonValue:
    """A protobuf ``Value`` as JSON; whole numbers come back as ints (a Value keeps doubles)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: value_json(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_json(item) for item in value.list_value.values]
    return None


def struct_json(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A protobuf ``Struct`` (A2A metadata) as a JSON object."""
    return {key: value_json(item) for key, item in struct.fields.items()}


def struct_of(data: dict[str, Any]) -> struct_pb2.Struct:
    """A JSON object as a protobuf ``Struct`` (A2A metadata)."""
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def new_id() -> str:
    """A fresh random id (task, message, artifact): 128 random bits as hex, like
    ``uuid4().hex`` at a fraction of its cost (ids are made on every hop)."""
    return os.urandom(16).hex()


def state_name(state: int) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input-required`` (the spec's spelling)."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def json_part(data: JsonValue) -> Part:
    """A data part holding ``data`` as JSON."""
    return Part(data=to_value(data), media_type="application/json")


def task_status(state: int, message: Message | None = None) -> TaskStatus:
    """A task status stamped now."""
    now = time.time_ns()
    stamp = Timestamp(seconds=now // 1_000_000_000, nanos=now % 1_000_000_000)
    status = TaskStatus(state=state, timestamp=stamp)  # type: ignore[arg-type]
    if message is not None:
        status.message.CopyFrom(message)
    return status


def new_task(request: Message, task_id: str, *, skill: str, streams: bool) -> StreamResponse:
    """The first event of a new task: submitted, the request in its history."""
    task = Task(
        id=task_id,
        context_id=request.context_id,
        status=task_status(TaskState.TASK_STATE_SUBMITTED),
    )
    task.history.append(request)
    meta = task.metadata.fields[_META].struct_value.fields
    meta["skill"].string_value = skill
    meta["stream"].bool_value = streams
    return StreamResponse(task=task)


def status_event(
    task_id: str,
    context_id: str,
    state: int,
    *,
    message: Message | None = None,
    timing: tuple[float, float] | None = None,
    usage: dict[str, JsonValue] | None = None,
    record: list[dict[str, JsonValue]] | None = None,
) -> StreamResponse:
    """A status update; ``timing`` (started, ended) goes to the task's metadata under
    :data:`TIMING` (a key of its own: clients merge status metadata key by key), the model
    ``usage`` under :data:`USAGE`, its recorded events under :data:`RECORD`."""
    event = TaskStatusUpdateEvent(
        task_id=task_id, context_id=context_id, status=task_status(state, message)
    )
    if timing is not None:
        fields = event.metadata.fields[TIMING].struct_value.fields
        fields["started_at"].number_value, fields["ended_at"].number_value = timing
    if usage:
        event.metadata.fields[USAGE].struct_value.update(usage)
    if record:
        event.metadata.fields[RECORD].list_value.extend(record)
    return StreamResponse(status_update=event)


def artifact_event(
    task_id: str, context_id: str, artifact_id: str, parts: list[Part], *, append: bool
) -> StreamResponse:
    """Parts of the ``result`` artifact; ``append`` adds them to the parts already sent."""
    artifact = Artifact(artifact_id=artifact_id, name=RESULT_ARTIFACT, parts=parts)
    return StreamResponse(
        artifact_update=TaskArtifactUpdateEvent(
            task_id=task_id, context_id=context_id, artifact=artifact, append=append
        )
    )


def _agent_message(context_id: str, task_id: str, text: str, meta: dict[str, Any]) -> Message:
    return Message(
        message_id=new_id(),
        context_id=context_id,
        task_id=task_id,
        role=Role.ROLE_AGENT,
        parts=[Part(text=text)],
        metadata=struct_of({_META: meta}),
    )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return repr(value)


def error_message(context_id: str, task_id: str, error: BaseException) -> Message:
    """A failed task's status message: the error's text, type and fields (to re-raise it)."""
    fields = {key: _jsonable(value) for key, value in vars(error).items() if key != "message"}
    detail = {"type": type(error).__name__, "message": str(error), "fields": fields}
    return _agent_message(context_id, task_id, str(error), {"error": detail})


def input_message(context_id: str, task_id: str, request: errors.InputRequired) -> Message:
    """An input-required task's status message: the skill's question, and what fills it."""
    detail = {"prompt": request.prompt, "field": request.field, "skill": request.skill}
    if request.approval is not None:  # the exact call a human is asked to approve
        detail |= {"tool": request.tool, "approval": request.approval}
    return _agent_message(context_id, task_id, request.prompt, {"input": detail})


def apply_event(task: Task | None, event: StreamResponse) -> Task:
    """Fold one event into the task seen so far (a new ``Task`` event replaces it)."""
    if event.HasField("task"):
        folded = Task()
        folded.CopyFrom(event.task)
        return folded
    current = task or Task()
    if event.HasField("status_update"):
        update = event.status_update
        current.id = current.id or update.task_id
        current.context_id = current.context_id or update.context_id
        current.status.CopyFrom(update.status)
        if update.HasField("metadata"):
            current.metadata.MergeFrom(update.metadata)
    elif event.HasField("artifact_update"):
        artifact_update = event.artifact_update
        current.id = current.id or artifact_update.task_id
        for artifact in current.artifacts:
            if artifact.artifact_id == artifact_update.artifact.artifact_id:
                if artifact_update.append:
                    artifact.parts.extend(artifact_update.artifact.parts)
                else:
                    artifact.CopyFrom(artifact_update.artifact)
                break
        else:
            current.artifacts.append(artifact_update.artifact)
    return current


def events_of(task: Task) -> Iterator[StreamResponse]:
    """A finished task replayed as the events that would have built it (for agents that
    answer whole tasks, such as remote A2A agents behind a proxy)."""
    first = Task()
    first.CopyFrom(task)
    first.status.CopyFrom(task_status(TaskState.TASK_STATE_SUBMITTED))
    del first.artifacts[:]
    yield StreamResponse(task=first)
    yield status_event(task.id, task.context_id, TaskState.TASK_STATE_WORKING)
    for artifact in task.artifacts:
        yield StreamResponse(
            artifact_update=TaskArtifactUpdateEvent(
                task_id=task.id, context_id=task.context_id, artifact=artifact
            )
        )
    yield StreamResponse(
        status_update=TaskStatusUpdateEvent(
            task_id=task.id, context_id=task.context_id, status=task.status
        )
    )

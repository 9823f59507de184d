"""A2A on the mesh: Agent Cards from agent classes, skill calls as A2A messages and tasks.

Mesh traffic uses the a2a-sdk protobuf types unchanged, serialised to bytes to cross Ray (the
protobuf classes do not pickle). A skill call is a user-role ``Message`` with one data part (the
arguments); its answer is a ``Task``: completed with one ``result`` artifact, or failed with a
status message that carries the error's type and fields so the caller re-raises the same
agentmesh error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import JsonValue

from agentmesh import errors

if TYPE_CHECKING:
    from agentmesh.agent import Agent

__all__ = [
    "MESH_BINDING",
    "SKILL_SCHEMAS_EXTENSION",
    "SkillCall",
    "answer_skill_call",
    "build_agent_card",
    "card_skill_schemas",
    "completed_task",
    "failed_task",
    "message_text",
    "parse_skill_call",
    "skill_call_message",
    "task_result",
    "task_text",
    "task_timing",
    "value_json",
]

#: protocol_binding of the interface an in-mesh agent is reached on (Ray actor calls).
MESH_BINDING = "AGENTMESH-RAY"
#: Card extension carrying each skill's JSON input and output schemas.
SKILL_SCHEMAS_EXTENSION = "urn:agentmesh:ext:skill-schemas:v1"
_META = "agentmesh"


def _to_value(data: JsonValue) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


def _integral(data: Any) -> Any:
    """protobuf Value keeps numbers as doubles; give whole numbers back as ints (JSON has one)."""
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    if isinstance(data, list):
        return [_integral(item) for item in data]
    if isinstance(data, dict):
        return {key: _integral(item) for key, item in data.items()}
    return data


def value_json(value: struct_pb2.Value) -> JsonValue:
    """A protobuf Value (an A2A data part) as JSON, whole numbers as ints."""
    return _integral(json_format.MessageToDict(value))


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(data, struct)
    return struct


def _struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _integral(json_format.MessageToDict(struct))


# --- Agent Cards ----------------------------------------------------------------------------


def build_agent_card(agent_cls: type[Agent], *, url: str | None = None) -> AgentCard:
    """The A2A Agent Card of an agent class; schemas ride in a card extension."""
    skills = [
        AgentSkill(
            id=spec.name,
            name=spec.name,
            description=spec.description,
            tags=list(spec.tags) or [agent_cls.name],
            examples=list(spec.examples),
            input_modes=["application/json"],
            output_modes=["application/json"],
        )
        for spec in agent_cls.skills.values()
    ]
    schemas = {
        spec.name: {"input": spec.input_schema, "output": spec.output_schema}
        for spec in agent_cls.skills.values()
    }
    return AgentCard(
        name=agent_cls.name,
        description=agent_cls.description,
        version=agent_cls.version,
        supported_interfaces=[
            AgentInterface(
                url=url or f"ray://agentmesh/{agent_cls.name}",
                protocol_binding=MESH_BINDING,
                protocol_version="1.0",
            )
        ],
        capabilities=AgentCapabilities(
            streaming=False,
            extensions=[
                AgentExtension(
                    uri=SKILL_SCHEMAS_EXTENSION,
                    description="JSON Schemas of each skill's input and output",
                    required=False,
                    params=_struct(schemas),
                )
            ],
        ),
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=skills,
    )


def card_skill_schemas(card: AgentCard) -> dict[str, dict[str, Any]]:
    """{skill: {"input": schema, "output": schema}} from a card built by this module."""
    for ext in card.capabilities.extensions:
        if ext.uri == SKILL_SCHEMAS_EXTENSION:
            return _struct_dict(ext.params)
    return {}


# --- skill calls as messages ----------------------------------------------------------------


class SkillCall:
    """A decoded skill-call message."""

    __slots__ = ("args", "context_id", "message_id", "recipient", "sender", "skill")

    def __init__(
        self,
        *,
        sender: str,
        recipient: str,
        skill: str,
        args: dict[str, JsonValue],
        message_id: str,
        context_id: str,
    ) -> None:
        self.sender = sender
        self.recipient = recipient
        self.skill = skill
        self.args = args
        self.message_id = message_id
        self.context_id = context_id


def skill_call_message(
    *, sender: str, recipient: str, skill: str, args: dict[str, JsonValue], context_id: str
) -> Message:
    """An A2A message asking ``recipient`` to run ``skill`` with ``args``."""
    return Message(
        message_id=uuid.uuid4().hex,
        context_id=context_id,
        role=Role.ROLE_USER,
        parts=[Part(data=_to_value(args), media_type="application/json")],
        metadata=_struct({_META: {"sender": sender, "recipient": recipient, "skill": skill}}),
    )


def parse_skill_call(message: Message) -> SkillCall:
    """Decode a skill-call message; a malformed one raises a UserError."""
    meta = _struct_dict(message.metadata).get(_META) or {}
    data_parts = [part for part in message.parts if part.WhichOneof("content") == "data"]
    if not meta.get("skill") or len(data_parts) != 1:
        raise errors.UserError("not an agentmesh skill call: needs one data part and a skill")
    args = value_json(data_parts[0].data)
    if not isinstance(args, dict):
        raise errors.UserError("skill call arguments must be a JSON object")
    return SkillCall(
        sender=str(meta.get("sender", "")),
        recipient=str(meta.get("recipient", "")),
        skill=str(meta["skill"]),
        args=args,
        message_id=message.message_id,
        context_id=message.context_id,
    )


def message_text(message: Message) -> str:
    """Everything a message says, as text, for the security scanner."""
    return "\n".join(_part_text(part) for part in message.parts)


def _part_text(part: Part) -> str:
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return json_format.MessageToJson(part.data, indent=None)
    return ""


# --- answers as tasks -----------------------------------------------------------------------


def _status(state: int, message: Message | None = None) -> TaskStatus:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return TaskStatus(state=state, message=message, timestamp=stamp)  # type: ignore[arg-type]


def completed_task(
    request: Message, result: JsonValue, *, started_at: float, ended_at: float
) -> Task:
    """The completed task answering ``request``, its result in one ``result`` artifact."""
    return Task(
        id=uuid.uuid4().hex,
        context_id=request.context_id,
        status=_status(TaskState.TASK_STATE_COMPLETED),
        artifacts=[
            Artifact(
                artifact_id=uuid.uuid4().hex,
                name="result",
                parts=[Part(data=_to_value(result), media_type="application/json")],
            )
        ],
        history=[request],
        metadata=_struct({_META: {"started_at": started_at, "ended_at": ended_at}}),
    )


def failed_task(
    request: Message, error: BaseException, *, started_at: float, ended_at: float | None = None
) -> Task:
    """A failed task whose status message names the error type and keeps its fields."""
    fields = {key: _jsonable(value) for key, value in vars(error).items() if key != "message"}
    detail = {"type": type(error).__name__, "message": str(error), "fields": fields}
    status_message = Message(
        message_id=uuid.uuid4().hex,
        context_id=request.context_id,
        role=Role.ROLE_AGENT,
        parts=[Part(text=str(error))],
        metadata=_struct({_META: {"error": detail}}),
    )
    return Task(
        id=uuid.uuid4().hex,
        context_id=request.context_id,
        status=_status(TaskState.TASK_STATE_FAILED, status_message),
        history=[request],
        metadata=_struct({_META: {"started_at": started_at, "ended_at": ended_at or time.time()}}),
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


async def answer_skill_call(
    raw: bytes,
    run: Callable[[SkillCall], Awaitable[JsonValue]],
    wrap: Callable[[str, Exception], errors.AgentMeshError],
) -> bytes:
    """Decode a serialised skill-call message, run it, and answer with a serialised task.

    Never raises: an agentmesh error fails the task as it is, any other exception is first
    turned into one by ``wrap(skill, exc)``. Local agents and remote-agent proxies share this
    envelope, so both answer exactly alike.
    """
    started = time.time()
    request = Message.FromString(raw)
    skill = "?"
    try:
        call = parse_skill_call(request)
        skill = call.skill
        result = await run(call)
    except errors.AgentMeshError as exc:
        error = exc
    except Exception as exc:
        error = wrap(skill, exc)
    else:
        return completed_task(
            request, result, started_at=started, ended_at=time.time()
        ).SerializeToString()
    return failed_task(request, error, started_at=started).SerializeToString()


def task_text(task: Task) -> str:
    """Everything a task's artifacts say, as text, for the security scanner."""
    return "\n".join(_part_text(part) for artifact in task.artifacts for part in artifact.parts)


def task_timing(task: Task) -> tuple[float | None, float | None]:
    """(started_at, ended_at) as the agent recorded them."""
    meta = _struct_dict(task.metadata).get(_META) or {}
    return meta.get("started_at"), meta.get("ended_at")


def task_result(task: Task) -> JsonValue:
    """The result of a completed task, or raise the error a failed task carries."""
    if task.status.state == TaskState.TASK_STATE_COMPLETED:
        for artifact in task.artifacts:
            if artifact.name == "result" and artifact.parts:
                return value_json(artifact.parts[0].data)
        raise errors.RunError(f"task {task.id} completed without a result artifact")
    raise _error_from(task)


def _error_from(task: Task) -> errors.AgentMeshError:
    meta = _struct_dict(task.status.message.metadata).get(_META) or {}
    detail = meta.get("error") or {}
    cls = getattr(errors, str(detail.get("type")), None)
    message = str(detail.get("message") or task.status.message.parts[0].text)
    if not (isinstance(cls, type) and issubclass(cls, errors.AgentMeshError)):
        return errors.RunError(message)
    fields = dict(detail.get("fields") or {})
    if issubclass(cls, errors.SecurityDenied) and isinstance(fields.get("decision"), dict):
        from agentmesh.security import Decision

        fields["decision"] = Decision.model_validate(fields["decision"])
    error: errors.AgentMeshError = errors._restore(cls, (message,), {"message": message, **fields})
    return error

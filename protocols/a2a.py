"""A2A on the mesh: Agent Cards from agent classes, skill calls as A2A messages and tasks.

Mesh traffic uses the a2a-sdk protobuf types unchanged, serialised to bytes to cross Ray (the
protobuf classes do not pickle). A skill call is a user-role ``Message`` with one data part (the
arguments); its answer is a ``Task``: completed with one ``result`` artifact, or failed with a
status message that carries the error's type and fields so the caller re-raises the same
agentmesh error.
"""

from __future__ import annotations

import json
import time
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
from pydantic import JsonValue

from agentmesh import errors
from agentmesh.protocols.a2a_tasks import (
    META_KEY,
    RESULT_ARTIFACT,
    TIMING,
    error_message,
    new_id,
    struct_json,
    struct_of,
    task_status,
    to_value,
    value_json,
)

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
    "named_skill",
    "parse_skill_call",
    "skill_call_message",
    "stamp_message",
    "status_error",
    "task_result",
    "task_text",
    "task_timing",
    "value_json",
]

#: protocol_binding of the interface an in-mesh agent is reached on (Ray actor calls).
MESH_BINDING = "AGENTMESH-RAY"
#: Card extension carrying each skill's JSON input and output schemas.
SKILL_SCHEMAS_EXTENSION = "urn:agentmesh:ext:skill-schemas:v1"
_META = META_KEY


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
                    params=struct_of(schemas),
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
            return struct_json(ext.params)
    return {}


# --- skill calls as messages ----------------------------------------------------------------


class SkillCall:
    """A decoded skill-call message.

    ``task_id`` is the task the call runs as: the id the sender chose for a new task, or, when
    ``continues`` is true, the input-required task this message answers (its ``skill`` may
    then be empty: the task knows it). ``text`` is set instead of ``args`` when the message
    is a lone text part.
    """

    __slots__ = (
        "args",
        "context_id",
        "continues",
        "message_id",
        "recipient",
        "sender",
        "skill",
        "task_id",
        "text",
    )

    def __init__(
        self,
        *,
        sender: str,
        recipient: str,
        skill: str,
        args: dict[str, JsonValue],
        message_id: str,
        context_id: str,
        task_id: str = "",
        continues: bool = False,
        text: str | None = None,
    ) -> None:
        self.sender = sender
        self.recipient = recipient
        self.skill = skill
        self.args = args
        self.message_id = message_id
        self.context_id = context_id
        self.task_id = task_id
        self.continues = continues
        self.text = text


def skill_call_message(
    *,
    sender: str,
    recipient: str,
    skill: str,
    args: dict[str, JsonValue],
    context_id: str,
    task_id: str | None = None,
    continues: bool = False,
) -> Message:
    """An A2A message asking ``recipient`` to run ``skill`` with ``args``.

    ``task_id`` names the task it runs as (a new one unless ``continues``: then the message
    answers that input-required task).
    """
    meta = {"sender": sender, "recipient": recipient, "skill": skill}
    message = Message(
        message_id=new_id(),
        context_id=context_id,
        role=Role.ROLE_USER,
        parts=[Part(data=to_value(args), media_type="application/json")],
    )
    if continues and task_id:
        message.task_id = task_id
    elif task_id:
        meta["task_id"] = task_id
    fields = message.metadata.fields[_META].struct_value.fields  # set in place: every hop
    for key, value in meta.items():
        fields[key].string_value = value
    return message


def stamp_message(
    message: Message, *, sender: str, recipient: str, skill: str, task_id: str
) -> Message:
    """A copy of an A2A message as the mesh routes it: who sends it, to which skill, as which
    task. Whatever the message claimed under ``agentmesh`` is replaced: only the router that
    stamps it knows the sender."""
    stamped = Message()
    stamped.CopyFrom(message)
    meta = struct_json(message.metadata) if message.HasField("metadata") else {}
    meta[_META] = {"sender": sender, "recipient": recipient, "skill": skill}
    if not message.task_id:
        meta[_META]["task_id"] = task_id
    stamped.metadata.CopyFrom(struct_of(meta))
    return stamped


def _mesh_meta(message: Message) -> dict[str, str]:
    """The string fields of ``metadata.agentmesh`` (sender, recipient, skill, task_id), read
    straight from the protobuf: this runs on every hop."""
    fields = message.metadata.fields
    if _META not in fields or fields[_META].WhichOneof("kind") != "struct_value":
        return {}
    inner = fields[_META].struct_value.fields
    return {k: v.string_value for k, v in inner.items() if v.WhichOneof("kind") == "string_value"}


def named_skill(message: Message, mesh_meta: dict[str, str] | None = None) -> str | None:
    """The skill a message names: ``metadata.agentmesh.skill`` or ``metadata.skill`` (A2A
    clients).

    Raises:
        UserError: the name is there but not a non-empty string.
    """
    meta = _mesh_meta(message) if mesh_meta is None else mesh_meta
    if meta.get("skill"):
        return meta["skill"]
    fields = message.metadata.fields
    if "skill" not in fields:
        return None
    named = fields["skill"]
    if named.WhichOneof("kind") != "string_value" or not named.string_value:
        raise errors.UserError("metadata 'skill' must be a non-empty string")
    return named.string_value


def parse_skill_call(message: Message) -> SkillCall:
    """Decode a skill-call message; a malformed one raises a UserError.

    A call has exactly one part: a data part with the arguments as a JSON object, or a text
    part (for a skill whose one required parameter is a string, or the answer to a question).
    """
    meta = _mesh_meta(message)
    skill = named_skill(message, meta) or ""  # the router names it, or the waiting task knows it
    if len(message.parts) != 1:
        raise errors.UserError("a skill call has exactly one part: a data part or a text part")
    part = message.parts[0]
    kind = part.WhichOneof("content")
    args: dict[str, JsonValue] = {}
    text: str | None = None
    if kind == "data":
        data = value_json(part.data)
        if not isinstance(data, dict):
            raise errors.UserError("skill call arguments must be a JSON object")
        args = data
    elif kind == "text":
        text = part.text
    else:
        raise errors.UserError("a skill call has a data part or a text part, nothing else")
    return SkillCall(
        sender=meta.get("sender", ""),
        recipient=meta.get("recipient", ""),
        skill=skill,
        args=args,
        message_id=message.message_id,
        context_id=message.context_id,
        task_id=message.task_id or meta.get("task_id", ""),
        continues=bool(message.task_id),
        text=text,
    )


def message_text(message: Message) -> str:
    """Everything a message says, as text, for the security scanner."""
    return "\n".join(_part_text(part) for part in message.parts)


def _part_text(part: Part) -> str:
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return json.dumps(value_json(part.data), ensure_ascii=False)
    return ""


# --- answers as tasks -----------------------------------------------------------------------


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
    return "\n".join(_part_text(part) for artifact in task.artifacts for part in artifact.parts)


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
        meta = task.metadata.fields.get(_META)
        streamed = meta is not None and meta.struct_value.fields.get("stream")
        if streamed and streamed.bool_value:
            return [value_json(part.data) for part in parts]
        if parts:
            return value_json(parts[0].data)
        raise errors.RunError(f"task {task.id} completed without a result artifact")
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        ask = struct_json(task.status.message.metadata).get(_META, {}).get("input") or {}
        prompt = str(ask.get("prompt") or _first_text(task.status.message) or "input required")
        raise errors.InputRequired(
            prompt,
            field=ask.get("field"),
            agent=agent,
            skill=str(ask.get("skill") or ""),
            task_id=task.id,
        )
    if state == TaskState.TASK_STATE_CANCELED:
        raise errors.TaskCanceledError(task.id, agent=agent)
    raise status_error(task.status)


def _first_text(message: Message) -> str:
    return next((p.text for p in message.parts if p.WhichOneof("content") == "text"), "")


def status_error(status: TaskStatus) -> errors.AgentMeshError:
    """The agentmesh error a failed task's status carries (a RunError if it names none)."""
    meta = struct_json(status.message.metadata).get(_META) or {}
    detail = meta.get("error") or {}
    cls = getattr(errors, str(detail.get("type")), None)
    message = str(detail.get("message") or _first_text(status.message) or "the task failed")
    if not (isinstance(cls, type) and issubclass(cls, errors.AgentMeshError)):
        return errors.RunError(message)
    fields = dict(detail.get("fields") or {})
    if issubclass(cls, errors.SecurityDenied) and isinstance(fields.get("decision"), dict):
        from agentmesh.security import Decision

        fields["decision"] = Decision.model_validate(fields["decision"])
    error: errors.AgentMeshError = errors._restore(cls, (message,), {"message": message, **fields})
    return error

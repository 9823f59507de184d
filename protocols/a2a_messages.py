"""Skill calls as A2A messages: how the mesh writes, stamps and reads a call.

A skill call is a user-role ``Message`` with one part: a data part (the arguments as a JSON
object) or a text part. Who sends it, to which skill and as which task rides in
``metadata.agentmesh``, which only the router that stamps a message may set. Kept apart from
:mod:`agentmesh.protocols.a2a` (the cards, and the names it re-exports) and from the answers
(:mod:`agentmesh.protocols.a2a_answers`) because this is the request half of the wire format.
"""

from __future__ import annotations

import json

from a2a.types import Message, Part, Role
from pydantic import JsonValue

from agentmesh import errors
from agentmesh.protocols.a2a_tasks import (
    META_KEY,
    new_id,
    struct_json,
    struct_of,
    to_value,
    value_json,
)

__all__ = [
    "SkillCall",
    "message_text",
    "named_skill",
    "parse_skill_call",
    "part_text",
    "skill_call_message",
    "stamp_message",
]


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
    fields = message.metadata.fields[META_KEY].struct_value.fields  # set in place: every hop
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
    meta[META_KEY] = {"sender": sender, "recipient": recipient, "skill": skill}
    if not message.task_id:
        meta[META_KEY]["task_id"] = task_id
    stamped.metadata.CopyFrom(struct_of(meta))
    return stamped


def _mesh_meta(message: Message) -> dict[str, str]:
    """The string fields of ``metadata.agentmesh`` (sender, recipient, skill, task_id), read
    straight from the protobuf: this runs on every hop."""
    fields = message.metadata.fields
    if META_KEY not in fields or fields[META_KEY].WhichOneof("kind") != "struct_value":
        return {}
    inner = fields[META_KEY].struct_value.fields
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
    return "\n".join(part_text(part) for part in message.parts)


def part_text(part: Part) -> str:
    """What one part says, as text: its text, or its data as JSON; empty for other kinds."""
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return json.dumps(value_json(part.data), ensure_ascii=False)
    return ""

"""How an A2A message from outside the mesh becomes one skill call, and who may make it.

A message names its skill in ``metadata["skill"]`` (or in the mesh's own
``metadata["agentmesh"]["skill"]``; an agent with a single skill needs neither) and carries
exactly one part: a data part holding the arguments as a JSON object, or a text part for a skill
whose input has exactly one required parameter and that parameter is a string. Anything else is
refused before a task exists, as invalid params.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from a2a.types import Message
from google.protobuf import json_format
from pydantic import JsonValue

from agentmesh.protocols.a2a import card_skill_schemas, value_json

__all__ = ["CallRefused", "Grants", "SkillCall", "SkillTable", "resolve_call"]


class CallRefused(Exception):
    """The message is not a call this identity may make; ``reason`` is safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Grants:
    """The ``agent.skill`` glob patterns one identity may call (``agent`` alone: every skill)."""

    __slots__ = ("name", "patterns")

    def __init__(self, name: str, patterns: Sequence[str]) -> None:
        self.name = name
        self.patterns = tuple(p if "." in p else f"{p}.*" for p in patterns)

    def may_reach(self, agent: str) -> bool:
        """Whether any pattern could match a skill of ``agent``."""
        return any(fnmatch.fnmatchcase(agent, p.split(".", 1)[0]) for p in self.patterns)

    def may_call(self, agent: str, skill: str) -> bool:
        target = f"{agent}.{skill}"
        return any(fnmatch.fnmatchcase(target, p) for p in self.patterns)


class SkillCall:
    __slots__ = ("args", "skill")

    def __init__(self, skill: str, args: dict[str, JsonValue]) -> None:
        self.skill = skill
        self.args = args


class SkillTable:
    """One agent's skills and, for each, the parameter a lone text part fills (if any)."""

    def __init__(self, agent: str, card: Any) -> None:
        self.agent = agent
        self.skills = [s.id for s in card.skills]
        self.text_param: dict[str, str] = {}
        for skill, schemas in card_skill_schemas(card).items():
            inputs: Mapping[str, Any] = schemas.get("input") or {}
            required = list(inputs.get("required") or [])
            props = inputs.get("properties") or {}
            if len(required) == 1 and (props.get(required[0]) or {}).get("type") == "string":
                self.text_param[skill] = required[0]


def _named_skill(message: Message) -> str | None:
    meta = json_format.MessageToDict(message.metadata) if message.HasField("metadata") else {}
    skill = meta.get("skill")
    if skill is None and isinstance(meta.get("agentmesh"), dict):
        skill = meta["agentmesh"].get("skill")
    if skill is None:
        return None
    if not isinstance(skill, str) or not skill:
        raise CallRefused("metadata 'skill' must be a non-empty string")
    return skill


def resolve_call(message: Message, table: SkillTable, grants: Grants) -> SkillCall:
    """The skill call a message asks for, or CallRefused with a reason safe to send back."""
    skill = _named_skill(message)
    if skill is None:
        if len(table.skills) != 1:
            raise CallRefused("name the skill in the message metadata: {'skill': <skill id>}")
        skill = table.skills[0]
    if skill not in table.skills or not grants.may_call(table.agent, skill):
        # one answer for both: an identity learns nothing about skills it may not call
        raise CallRefused(f"this identity may not call skill {skill[:100]!r} of {table.agent!r}")
    if len(message.parts) != 1:
        raise CallRefused("a skill call has exactly one part: a data part or a text part")
    part = message.parts[0]
    kind = part.WhichOneof("content")
    if kind == "data":
        args = value_json(part.data)
        if not isinstance(args, dict):
            raise CallRefused("the data part must hold the arguments as a JSON object")
        return SkillCall(skill, args)
    if kind == "text":
        param = table.text_param.get(skill)
        if param is None:
            raise CallRefused(
                f"skill {skill!r} does not take a text part: send its arguments as a data part"
            )
        return SkillCall(skill, {param: part.text})
    raise CallRefused("a skill call has a data part or a text part, nothing else")

"""How an A2A message from outside the mesh becomes one skill call, and who may make it.

A message names its skill in ``metadata["skill"]`` (or in the mesh's own
``metadata["agentmesh"]["skill"]``; an agent with a single skill needs neither) and carries
exactly one part: a data part holding the arguments as a JSON object, or a text part for a skill
whose input has exactly one required parameter and that parameter is a string. A message on an
existing task (``task_id`` set) answers that input-required task: its skill is the task's. Anything
else is refused before a task exists, as invalid params.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from a2a.types import Message

from agentmesh._private.skill_invoke import text_parameter
from agentmesh.errors import UserError
from agentmesh.protocols import a2a

__all__ = ["CallRefused", "Grants", "SkillTable", "resolve_call"]


class CallRefused(Exception):
    """The message is not a call this identity may make; ``reason`` is safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Grants:
    """The ``agent.skill`` glob patterns one identity may call (``agent`` alone: every skill),
    and whether it may fetch the extended Agent Cards (which carry the skills' schemas)."""

    __slots__ = ("extended_card", "name", "patterns")

    def __init__(self, name: str, patterns: Sequence[str], *, extended_card: bool = False) -> None:
        self.name = name
        self.patterns = tuple(p if "." in p else f"{p}.*" for p in patterns)
        self.extended_card = extended_card

    def may_reach(self, agent: str) -> bool:
        """Whether any pattern could match a skill of ``agent``."""
        return any(fnmatch.fnmatchcase(agent, p.split(".", 1)[0]) for p in self.patterns)

    def may_call(self, agent: str, skill: str) -> bool:
        target = f"{agent}.{skill}"
        return any(fnmatch.fnmatchcase(target, p) for p in self.patterns)


class SkillTable:
    """One agent's skills and, for each, the parameter a lone text part fills (if any)."""

    def __init__(self, agent: str, card: Any) -> None:
        self.agent = agent
        self.skills = [s.id for s in card.skills]
        self.text_param: dict[str, str] = {}
        for skill, schemas in a2a.card_skill_schemas(card).items():
            param = text_parameter(schemas.get("input") or {})
            if param is not None:
                self.text_param[skill] = param


def resolve_call(message: Message, table: SkillTable, grants: Grants) -> str:
    """The skill a message calls ("" when it answers a waiting task, whose skill is fixed and
    whose owner the task store checks), or CallRefused with a reason safe to send back."""
    try:
        call = a2a.parse_skill_call(message)  # one part: a data object or a text
    except UserError as exc:
        raise CallRefused(exc.message) from None
    if call.continues:
        return ""
    skill = call.skill
    if not skill:
        if len(table.skills) != 1:
            raise CallRefused("name the skill in the message metadata: {'skill': <skill id>}")
        skill = table.skills[0]
    if skill not in table.skills or not grants.may_call(table.agent, skill):
        # one answer for both: an identity learns nothing about skills it may not call
        raise CallRefused(f"this identity may not call skill {skill[:100]!r} of {table.agent!r}")
    if call.text is not None and skill not in table.text_param:
        raise CallRefused(
            f"skill {skill!r} does not take a text part: send its arguments as a data part"
        )
    return skill

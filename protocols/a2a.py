"""A2A on the mesh: Agent Cards from agent classes, skill calls as A2A messages and tasks.

Mesh traffic uses the a2a-sdk protobuf types unchanged, serialised to bytes to cross Ray (the
protobuf classes do not pickle). A skill call is a user-role ``Message`` with one data part (the
arguments); its answer is a ``Task``: completed with one ``result`` artifact, or failed with a
status message that carries the error's type and fields so the caller re-raises the same
agentmesh error.

This module builds the cards and is the one place to import from: the calls are written and
read in :mod:`agentmesh.protocols.a2a_messages`, the answers in
:mod:`agentmesh.protocols.a2a_answers`, and both are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
)

from agentmesh.protocols.a2a_answers import (
    answer_skill_call,
    completed_task,
    failed_task,
    status_error,
    task_events,
    task_result,
    task_text,
    task_timing,
    task_usage,
)
from agentmesh.protocols.a2a_messages import (
    SkillCall,
    message_text,
    named_skill,
    parse_skill_call,
    skill_call_message,
    stamp_message,
)
from agentmesh.protocols.a2a_tasks import struct_json, struct_of, value_json

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
    "task_events",
    "task_result",
    "task_text",
    "task_timing",
    "task_usage",
    "value_json",
]

#: protocol_binding of the interface an in-mesh agent is reached on (Ray actor calls).
MESH_BINDING = "AGENTMESH-RAY"
#: Card extension carrying each skill's JSON input and output schemas.
SKILL_SCHEMAS_EXTENSION = "urn:agentmesh:ext:skill-schemas:v1"


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

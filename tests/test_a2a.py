"""A2A types on the mesh: cards from classes, skill calls and tasks round-trip."""

from __future__ import annotations

import pytest
from a2a.types import AgentCard, Message, Role, Task, TaskState
from hypothesis import given
from hypothesis import strategies as st
from pydantic import JsonValue

from agentmesh import SkillInputError, UserError
from agentmesh.agents import Researcher
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import to_value


def test_card_lists_skills_and_schemas() -> None:
    card = AgentCard.FromString(a2a.build_agent_card(Researcher).SerializeToString())
    assert card.name == "researcher"
    assert [s.id for s in card.skills] == ["gather"]
    assert card.skills[0].examples == ["running agents at the edge"]
    assert card.supported_interfaces[0].protocol_binding == a2a.MESH_BINDING
    schemas = a2a.card_skill_schemas(card)
    assert schemas["gather"]["input"]["required"] == ["topic"]
    assert schemas["gather"]["input"]["properties"]["limit"]["default"] == 3
    assert schemas["gather"]["output"]["title"] == "Notes"


def test_skill_call_round_trip_keeps_integers() -> None:
    msg = a2a.skill_call_message(
        sender="a",
        recipient="b",
        skill="s",
        args={"n": 3, "x": 1.5, "l": [1, {"k": None}]},
        context_id="ctx",
    )
    decoded = a2a.parse_skill_call(Message.FromString(msg.SerializeToString()))
    assert (decoded.sender, decoded.recipient, decoded.skill) == ("a", "b", "s")
    assert decoded.args == {"n": 3, "x": 1.5, "l": [1, {"k": None}]}
    assert isinstance(decoded.args["n"], int)
    assert msg.role == Role.ROLE_USER and decoded.context_id == "ctx"


def test_malformed_message_is_a_user_error() -> None:
    with pytest.raises(UserError, match="exactly one part"):
        a2a.parse_skill_call(Message(message_id="m", role=Role.ROLE_USER))


def test_completed_and_failed_tasks() -> None:
    msg = a2a.skill_call_message(sender="a", recipient="b", skill="s", args={}, context_id="c")
    done = Task.FromString(
        a2a.completed_task(msg, {"ok": True}, started_at=1.0, ended_at=2.0).SerializeToString()
    )
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert a2a.task_result(done) == {"ok": True}
    assert a2a.task_timing(done) == (1.0, 2.0)
    error = SkillInputError("b", "s", ["x: Field required"])
    failed = Task.FromString(a2a.failed_task(msg, error, started_at=1.0).SerializeToString())
    assert failed.status.state == TaskState.TASK_STATE_FAILED
    with pytest.raises(SkillInputError) as info:
        a2a.task_result(failed)
    assert info.value.errors == ["x: Field required"] and info.value.agent == "b"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_json_survives_a_data_part_both_ways(data: JsonValue) -> None:
    """The fast protobuf conversions keep every JSON value, empty objects and lists included."""
    assert a2a.value_json(to_value(data)) == data

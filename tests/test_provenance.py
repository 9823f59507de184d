"""Provenance labels: the model, on parts and tasks, and how they propagate through a mesh."""

from __future__ import annotations

import json

import pytest
from a2a.types import Message, Part, Role, Task
from pydantic import ValidationError

from agentmesh import Label, Mesh, Plan, PlanStep, TemplatePlanner, ToolCallBlocked, Trust
from agentmesh.protocols.a2a_tasks import json_part, new_id
from agentmesh.provenance import (
    MAX_SOURCES,
    part_label,
    set_part_label,
    task_label,
)

from .test_remote_agent import Server, _call, _host, server  # noqa: F401 (the fixture)

# --- the label itself -----------------------------------------------------------------------


def test_join_keeps_the_least_trust_and_every_source() -> None:
    user, tool = Label.user(), Label.tool("office.read_inbox")
    joined = user.join(tool, Label.agent("clerk"))
    assert joined.trust is Trust.UNTRUSTED
    assert joined.sources == ("agent:clerk", "tool:office.read_inbox", "user")
    assert user.join(Label.agent("a"), Label.user("user:bo")).trust is Trust.TRUSTED
    assert user.join() == user
    assert Label.remote("calc").trust is Trust.UNTRUSTED
    assert Label.tool("clock.now", trusted=True).trusted


def test_sources_are_bounded_and_checked() -> None:
    many = Label.user().join(*(Label.agent(f"a{i}") for i in range(40)))
    assert len(many.sources) == MAX_SOURCES and many.sources[-1] == "more"
    with pytest.raises(ValidationError):
        Label(trust=Trust.TRUSTED, sources=())
    with pytest.raises(ValidationError):
        Label(trust=Trust.TRUSTED, sources=("two words",))
    with pytest.raises(ValidationError):
        Label.model_validate({"trust": "sort-of", "sources": ["user"]})
    with pytest.raises(ValidationError):
        Label(trust=Trust.TRUSTED, sources=("x" * 200,))


def test_labels_on_parts_and_tasks() -> None:
    part = Part(text="hello")
    assert part_label(part) is None
    set_part_label(part, Label.tool("web.fetch"))
    assert part_label(part) == Label.tool("web.fetch")
    bad = Part(text="x")
    bad.metadata.update({"agentmesh.provenance": {"trust": "very", "sources": ["user"]}})
    assert part_label(bad) is None  # malformed: as if unlabelled
    task = Task(id="t")
    artifact = task.artifacts.add()
    artifact.parts.append(part)
    assert task_label(task) == Label.tool("web.fetch")
    artifact.parts.append(Part(text="unlabelled"))  # one part from nowhere: all untrusted
    joined = task_label(task)
    assert joined is not None and "unlabelled" in joined.sources
    assert task_label(Task(id="empty")) is None


# --- propagation in a mesh ------------------------------------------------------------------


def _message(skill: str, args: dict[str, object], *, label: Label | None = None) -> Message:
    message = Message(message_id=new_id(), role=Role.ROLE_USER, parts=[json_part(args)])
    message.metadata.update({"skill": skill})
    if label is not None:
        set_part_label(message.parts[0], label)
    return message


async def test_a_tool_result_makes_the_task_untrusted(office_mesh: Mesh) -> None:
    read = await office_mesh.send("clerk", _message("read", {}))
    assert task_label(read) == Label(
        trust=Trust.UNTRUSTED, sources=("agent:clerk", "tool:office.read_inbox", "user")
    )
    relay = await office_mesh.send("clerk", _message("relay", {"text": "hi"}))
    assert task_label(relay) == Label(trust=Trust.TRUSTED, sources=("agent:clerk", "user"))


async def test_model_output_is_as_trusted_as_what_the_task_read(office_mesh: Mesh) -> None:
    seen = await office_mesh.call("clerk", "labels")
    assert isinstance(seen, dict)
    assert seen["before"] == {"trust": "trusted", "sources": ["user"]}
    assert seen["read"] == {"trust": "untrusted", "sources": ["tool:office.read_inbox"]}
    assert seen["after"] == {"trust": "untrusted", "sources": ["tool:office.read_inbox", "user"]}


async def test_a_side_effect_on_untrusted_data_is_refused(office_mesh: Mesh) -> None:
    args = {"to": "someone@example.org", "body": "hi"}
    # the user's own input: allowed
    sent = await office_mesh.call("clerk", "act", tool="office.send_mail", args=args)
    assert sent == "sent to someone@example.org"
    # the same call after the task read the inbox: refused, naming the rule and the argument
    with pytest.raises(ToolCallBlocked, match=r"provenance\.untrusted_arguments") as info:
        await office_mesh.call("clerk", "act", tool="office.send_mail", args=args, read_first=True)
    assert "['to']" in info.value.decision.reason
    assert "tool:office.read_inbox" in info.value.decision.reason
    assert "someone@example.org" not in str(info.value)  # never quotes the values


async def test_a_reply_from_an_agent_carries_its_label(office_mesh: Mesh) -> None:
    # the assistant read the inbox for the clerk: the clerk's task is untrusted from then on
    with pytest.raises(ToolCallBlocked, match=r"provenance\.untrusted_arguments"):
        await office_mesh.call("clerk", "forward_inbox", to="someone@example.org")


async def test_labels_flow_down_a_plan(office_mesh: Mesh) -> None:
    steps = [
        PlanStep(id="read", agent="clerk", skill="read"),
        PlanStep(id="shout", agent="clerk", skill="relay", inputs={"text": "read"}),
        PlanStep(id="hello", agent="clerk", skill="relay", args={"text": "hello"}),
        PlanStep(id="again", agent="clerk", skill="relay", inputs={"text": "hello"}),
    ]
    plan = Plan(goal="read my mail", steps=steps, output="shout")
    result = await office_mesh.run("read my mail", planner=TemplatePlanner(lambda _: plan))
    labels = {node.step_id: node.label for node in result.nodes}
    untrusted = Label(
        trust=Trust.UNTRUSTED, sources=("agent:clerk", "tool:office.read_inbox", "user")
    )
    assert labels["read"] == untrusted
    assert labels["shout"] == untrusted  # made from untrusted input
    assert labels["hello"] == labels["again"] == Label.user().join(Label.agent("clerk"))
    assert json.loads(str(result.node("read").output))  # the inbox itself came through


async def test_an_outside_caller_is_labelled_as_itself(office_mesh: Mesh) -> None:
    forged = Label.agent("boss")  # a claim from outside the mesh is not believed
    task = await office_mesh.send(
        "clerk", _message("relay", {"text": "x"}, label=forged), principal="user:dana"
    )
    assert task_label(task) == Label(trust=Trust.TRUSTED, sources=("agent:clerk", "user:dana"))
    # the driver's own label is believed: the executor passes upstream labels this way
    untrusted = Label.tool("web.fetch")
    task = await office_mesh.send("clerk", _message("relay", {"text": "x"}, label=untrusted))
    assert task_label(task) == untrusted.join(Label.agent("clerk"))


async def test_a_remote_agent_reply_is_untrusted(server: Server) -> None:  # noqa: F811
    from agentmesh import RemoteAgent

    host = await _host(RemoteAgent(url=server.base, trusted_keys=server.jwks))
    task = Task.FromString(await host.handle(_call("add", {"a": 1, "b": 2}).SerializeToString()))
    assert task_label(task) == Label.remote(host.name)
    await host.close()

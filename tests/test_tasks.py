"""A2A task states inside the mesh: streaming skills, input-required, cancellation, vetting.

Everything runs on the session's real mesh (Ray actors, the security actor); the gateway's
side of the same scenarios is tests/test_two_transports.py.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from a2a.types import Message, Part, Role, StreamResponse, Task, TaskState
from google.protobuf import json_format, struct_pb2

from agentmesh import (
    Agent,
    AgentDefinitionError,
    AgentUnavailableError,
    ConfigError,
    ContentQuarantined,
    InputRequired,
    Mesh,
    Policy,
    SkillInputError,
    TaskCanceledError,
    UnknownTaskError,
    skill,
)
from agentmesh.protocols import a2a

DONE = TaskState.TASK_STATE_COMPLETED


def call_message(
    skill: str,
    args: dict[str, Any] | None = None,
    *,
    text: str | None = None,
    task_id: str = "",
    context_id: str = "",
) -> Message:
    """An A2A message as any A2A client writes it: the skill in metadata, one part."""
    meta = struct_pb2.Struct()
    if skill:
        meta.update({"skill": skill})
    part = (
        Part(text=text)
        if text is not None
        else Part(data=json_format.ParseDict(args or {}, struct_pb2.Value()))
    )
    return Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_USER,
        parts=[part],
        metadata=meta,
        task_id=task_id,
        context_id=context_id or uuid.uuid4().hex,
    )


async def started(mesh: Mesh, key: str) -> None:
    """Until tasker's wait(key) is sleeping."""
    for _ in range(200):
        if await mesh.call("tasker", "was_cancelled", key=key) is False:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"wait({key}) never started")


def chunks(task: Task) -> list[Any]:
    return [json_format.MessageToDict(p.data) for a in task.artifacts for p in a.parts]


async def collect(events: Any) -> list[tuple[float, StreamResponse]]:
    return [(time.monotonic(), event) async for event in events]


async def test_a_generator_skill_streams_chunks_as_they_are_produced(mesh: Mesh) -> None:
    seen = await collect(mesh.stream("tasker", call_message("count", {"n": 3, "pause": 0.4})))
    kinds = [e.WhichOneof("payload") for _, e in seen]
    assert kinds == ["task", "status_update"] + ["artifact_update"] * 3 + ["status_update"]
    assert seen[1][1].status_update.status.state == TaskState.TASK_STATE_WORKING
    arrivals = [at for at, e in seen if e.HasField("artifact_update")]
    assert arrivals[-1] - arrivals[0] > 0.6  # the first chunk came before the last was made
    appends = [e.artifact_update.append for _, e in seen if e.HasField("artifact_update")]
    assert appends == [False, True, True]
    assert seen[-1][1].status_update.status.state == DONE
    # waited for whole, the same skill gives the chunks as a list, through both paths
    assert await mesh.call("tasker", "count", n=3) == [0, 1, 2]
    task = await mesh.send("tasker", call_message("count", {"n": 3}))
    assert task.status.state == DONE and chunks(task) == [0, 1, 2]
    assert await mesh.call("tasker", "lines", n=2) == ["line 0", "line 1"]  # a sync generator
    assert await mesh.call("tasker", "count", n=0) == []
    schemas = a2a.card_skill_schemas(next(c for c in mesh.cards() if c.name == "tasker"))
    assert schemas["count"]["output"] == {"type": "array", "items": {"type": "integer"}}


async def test_a_skill_asks_for_input_and_the_answer_resumes_it(mesh: Mesh) -> None:
    with pytest.raises(InputRequired) as asked:
        await mesh.call("tasker", "confirm", action="drop the table")
    question = asked.value
    assert (question.agent, question.skill, question.field) == ("tasker", "confirm", "confirm")
    assert "Really drop the table?" in question.prompt and question.task_id
    assert await mesh.resume("tasker", question.task_id, confirm=True) == "done: drop the table"
    with pytest.raises(UnknownTaskError):  # answered once: the task is finished
        await mesh.resume("tasker", question.task_id, confirm=True)


async def test_a_text_reply_fills_the_field_the_question_names(mesh: Mesh) -> None:
    first = await mesh.send("tasker", call_message("greet", {"greeting": "Hello"}))
    assert first.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert first.status.message.parts[0].text == "What is your name?"
    reply = call_message("", text="Ada", task_id=first.id, context_id=first.context_id)
    second = await mesh.send("tasker", reply)
    assert second.status.state == DONE and chunks(second) == ["Hello, Ada!"]


async def test_only_the_asker_may_answer_or_cancel_a_waiting_task(mesh: Mesh) -> None:
    first = await mesh.send("tasker", call_message("confirm", {"action": "x"}), principal="user:a")
    reply = call_message("", {"confirm": True}, task_id=first.id)
    with pytest.raises(UnknownTaskError):
        await mesh.send("tasker", reply, principal="user:b")
    with pytest.raises(UnknownTaskError):
        await mesh.cancel("tasker", first.id, principal="user:b")
    await mesh.cancel("tasker", first.id, principal="user:a")  # the owner may
    with pytest.raises(UnknownTaskError):  # and then it is gone
        await mesh.send("tasker", reply, principal="user:a")


async def test_cancel_stops_a_running_skill_and_ends_its_task_canceled(mesh: Mesh) -> None:
    key = uuid.uuid4().hex
    task_id = f"t-{key}"
    running = asyncio.ensure_future(
        mesh.send("tasker", call_message("wait", {"key": key, "seconds": 60}), task_id=task_id)
    )
    await started(mesh, key)
    with pytest.raises(UnknownTaskError):  # nobody else may cancel it
        await mesh.cancel("tasker", task_id, principal="user:mallory")
    asked = time.monotonic()
    await mesh.cancel("tasker", task_id)
    task = await asyncio.wait_for(running, timeout=10)
    assert time.monotonic() - asked < 5
    assert task.status.state == TaskState.TASK_STATE_CANCELED
    assert await mesh.call("tasker", "was_cancelled", key=key) is True
    with pytest.raises(TaskCanceledError):
        a2a.task_result(task)
    with pytest.raises(UnknownTaskError):  # finished: nothing left to cancel
        await mesh.cancel("tasker", task_id)


async def test_a_task_id_in_use_is_refused_and_the_running_task_keeps_going(mesh: Mesh) -> None:
    key = uuid.uuid4().hex
    wait = call_message("wait", {"key": key, "seconds": 60})
    running = asyncio.ensure_future(mesh.send("tasker", wait, task_id=key))
    await started(mesh, key)
    clash = await mesh.send("tasker", call_message("count", {"n": 1}), task_id=key)
    assert clash.status.state == TaskState.TASK_STATE_FAILED
    assert "already in use" in a2a.status_error(clash.status).message
    assert not running.done()
    await mesh.cancel("tasker", key)
    assert (await asyncio.wait_for(running, 10)).status.state == TaskState.TASK_STATE_CANCELED


async def test_streamed_chunks_are_vetted_one_by_one_and_whole(mesh: Mesh) -> None:
    planted = await collect(mesh.stream("tasker", call_message("leak", {"where": 1})))
    artifacts = [e for _, e in planted if e.HasField("artifact_update")]
    assert len(artifacts) == 1  # the benign chunk passed; the injection never did
    final = planted[-1][1].status_update
    assert final.status.state == TaskState.TASK_STATE_FAILED
    assert isinstance(a2a.status_error(final.status), ContentQuarantined)
    # an injection split over chunks passes each chunk's scan, not the whole result's
    split = await mesh.send("tasker", call_message("leak", {"where": 1, "split": True}))
    assert split.status.state == TaskState.TASK_STATE_FAILED
    assert isinstance(a2a.status_error(split.status), ContentQuarantined)


async def test_bad_calls_fail_their_task_with_a_typed_error(mesh: Mesh) -> None:
    task = await mesh.send("tasker", call_message("count", {"n": "many"}))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert isinstance(a2a.status_error(task.status), SkillInputError)
    text = await mesh.send("tasker", call_message("count", text="3"))  # count takes no text
    assert isinstance(a2a.status_error(text.status), SkillInputError)
    with pytest.raises(ConfigError):  # callers outside the mesh never speak as an agent
        await mesh.send("tasker", call_message("count", {"n": 1}), principal="echo")
    with pytest.raises(UnknownTaskError):
        await mesh.send("tasker", call_message("", {"n": 1}, task_id="no-such-task"))


def test_a_generator_skill_needs_an_iterator_hint() -> None:
    with pytest.raises(AgentDefinitionError, match="Iterator"):

        class Bad(Agent):
            """Bad."""

            @skill
            def numbers(self) -> list[int]:  # type: ignore[misc]
                """Yield numbers."""
                yield 1

    class Good(Agent):
        """Good."""

        @skill
        def numbers(self) -> Iterator[int]:
            """Yield numbers."""
            yield 1

    assert Good.skills["numbers"].streams


class Crasher(Agent):
    """Dies in the middle of a stream."""

    name = "crasher"

    @skill
    async def crash(self) -> AsyncIterator[int]:
        """Yield one chunk, then kill the actor's process."""
        yield 1
        await asyncio.sleep(0.2)
        os._exit(1)


async def test_an_agent_that_dies_mid_stream_ends_the_task_failed(ray_session: None) -> None:
    policy = Policy.from_yaml("name: crash\nmessages: [{from: [user], to: ['*']}]\n")
    async with Mesh([Crasher], policy=policy) as mesh:
        events = [e async for e in mesh.stream("crasher", call_message("crash"))]
        assert [e.WhichOneof("payload") for e in events][-2:] == [
            "artifact_update",
            "status_update",
        ]
        final = events[-1].status_update.status
        assert final.state == TaskState.TASK_STATE_FAILED
        assert isinstance(a2a.status_error(final), AgentUnavailableError)
        with pytest.raises(AgentUnavailableError):  # and a later call says so, typed
            await mesh.call("crasher", "crash")

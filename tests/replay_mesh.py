"""The meshes of the replay tests: a recorded mesh and the same mesh with one change each.

A reader peeks at a source (a read-only tool) and asks the model for notes; its first attempt
meets a model error, so the run retries it. A writer turns the notes into a line with the
model and records it (a side-effecting tool: the effect lands in a log file the tests read).
Every factory reads the effect log's folder from ``$AGENTMESH_TEST_EFFECTS`` and keeps its runs
and recordings in ``$AGENTMESH_STATE_DIR``, so ``agentmesh replay`` finds them.
"""

from __future__ import annotations

import os
from typing import ClassVar

from agentmesh import (
    Agent,
    Mesh,
    ModelEntry,
    Plan,
    PlanStep,
    Policy,
    Resources,
    RetryPolicy,
    ScriptedError,
    ScriptedModel,
    skill,
)

from .durable_mesh import EFFECTS_ENV, effects_server

#: The model's answers, in the order the run asks: the reader's failed and second tries, then
#: the writer's.
SCRIPT = ScriptedModel([ScriptedError(message="model overloaded"), "notes on mesh", "a line"])
FACTORY = "tests.replay_mesh:build_mesh"


class Reader(Agent):
    """Reads the source and takes notes with the model."""

    name = "reader"
    tools = ("effects.*",)
    model = "m"
    resources = Resources(num_cpus=0.1)

    @skill
    async def read(self, source: str) -> str:
        """Peek at ``source`` and summarise it."""
        seen = (await self.use_tool("effects.peek", entry=source)).text
        return (await self.generate(f"Take notes on: {seen}", max_tokens=32)).text

    @skill
    async def check(self, source: str) -> str:
        """Peek at ``source``; fail on one named "bad" (a node the planner then revises)."""
        if source == "bad":
            raise ValueError("a bad source")
        return (await self.use_tool("effects.peek", entry=source)).text


class Writer(Agent):
    """Writes a line from the notes and records it (an effect)."""

    name = "writer"
    tools = ("effects.*",)
    model = "m"
    resources = Resources(num_cpus=0.1)
    prompt: ClassVar[str] = "Write one line from these notes: {notes}"

    @skill
    async def write(self, notes: str) -> str:
        """Write and record a line."""
        line = (await self.generate(self.prompt.format(notes=notes), max_tokens=32)).text
        return (await self.use_tool("effects.record", entry=line)).text


class TersePromptWriter(Writer):
    """The writer with a changed prompt (the change a replay ``--with`` is asked about)."""

    name = "writer"
    prompt: ClassVar[str] = "Be terse. One line from: {notes}"


PLAN = Plan(
    goal="brief the mesh",
    steps=[
        PlanStep(id="read", agent="reader", skill="read", args={"source": "mesh docs"}),
        PlanStep(id="write", agent="writer", skill="write", inputs={"notes": "read"}),
    ],
    output="write",
)
_POLICY = """
name: replay{suffix}
description: The user asks the agents; they use the effect server's tools{what}.
default: block
messages:
  - {{from: [user], to: ["*"]}}
tools:
  reader: ["effects.peek"]
  writer: [{writer}]
tool_labels:
  effects.record: {{result_trust: trusted}}
  effects.peek: {{effect: read-only, result_trust: trusted}}
"""
POLICY = Policy.from_yaml(_POLICY.format(suffix="", what="", writer='"effects.*"'))
#: The writer may not record anything (a changed policy).
READ_ONLY_POLICY = Policy.from_yaml(
    _POLICY.format(suffix="-read-only", what=" (the writer only reads)", writer='"effects.peek"')
)


def _mesh(
    writer: type[Writer] = Writer,
    *,
    model: ModelEntry | None = None,
    policy: Policy = POLICY,
    factory: str = FACTORY,
) -> Mesh:
    return Mesh(
        [Reader, writer],
        models={"m": model or ModelEntry(spec=SCRIPT)},
        tools=[effects_server(os.environ[EFFECTS_ENV])],
        policy=policy,
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01, retry_on=("RunError",)),
        num_cpus=2,
        factory=factory,
    )


def build_mesh() -> Mesh:
    """The recorded mesh."""
    return _mesh()


def build_terse_mesh() -> Mesh:
    """The writer's prompt changed."""
    return _mesh(TersePromptWriter, factory="tests.replay_mesh:build_terse_mesh")


def build_new_model_mesh() -> Mesh:
    """A new version of the model (other weights: it answers otherwise)."""
    model = ModelEntry(spec=ScriptedModel(["other notes", "another line"]), version="2")
    return _mesh(model=model, factory="tests.replay_mesh:build_new_model_mesh")


def build_read_only_mesh() -> Mesh:
    """A policy under which the writer may not record."""
    return _mesh(policy=READ_ONLY_POLICY, factory="tests.replay_mesh:build_read_only_mesh")

"""The flight recorder: every run's plan, node transitions, messages, decisions, model and
tool calls, with their causes, redacted, in a SQLite file; a failing recorder fails no run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmesh import (
    Mesh,
    ModelCache,
    ModelEntry,
    ModelPlanner,
    Plan,
    PlanStep,
    ScriptedModel,
    TemplatePlanner,
)
from agentmesh._private.record_sqlite import SqliteRecorder
from agentmesh.cli import app
from agentmesh.errors import RunStoreError
from agentmesh.recording import RunEvent

from .mesh_agents import DOCS, POLICY, Tooler
from .test_models import POLICY as OPEN_POLICY
from .test_models import Editor, Writer


class DocsTooler(Tooler):
    """The shared tool-calling agent, with the docs server's tools only."""

    name = "tooler"  # the name the test policy grants the docs tools to
    tools = ("docs.*",)


def _tree(events: list[RunEvent]) -> dict[str, RunEvent]:
    return {e.id: e for e in events}


async def test_a_run_is_recorded_with_causes_in_order(ray_session: None, tmp_path: Path) -> None:
    models = {"default": ModelEntry(spec=ScriptedModel(["alpha beta", "edited", "gamma"]))}
    plan = Plan(
        goal="edit",
        steps=[
            PlanStep(id="e", agent="editor", skill="edit", args={"topic": "ann@example.com"}),
            PlanStep(id="w", agent="writer", skill="write", args={"topic": "ann@example.com"},
                     inputs={"after": "e"}),
        ],
    )  # fmt: skip
    async with Mesh(
        [Writer, Editor],
        models=models,
        model_cache=ModelCache(),
        policy=OPEN_POLICY,
        run_store=tmp_path / "runs.db",
        recorder=tmp_path / "recordings.db",
    ) as mesh:
        result = await mesh.run("edit", planner=TemplatePlanner(lambda goal: plan))
        events = mesh.events(result.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.run_id for e in events} == {result.run_id}
    first = events[0].body
    assert first.kind == "plan" and first.revision == 0
    assert [s.id for s in first.plan.steps] == ["e", "w"]
    assert first.plan.steps[1].args == {"topic": "[REDACTED:email]"}  # redacted like the rest
    by_id = _tree(events)
    nodes = [(e.node, e.body.status.value) for e in events if e.body.kind == "node"]  # type: ignore[union-attr]
    assert nodes == [("e", "running"), ("e", "succeeded"), ("w", "running"), ("w", "succeeded")]
    # the editor's task: its call to the writer, under the driver's call to the editor
    calls = [e for e in events if e.body.kind == "model_call"]
    nested, own, cached = calls
    to_writer = by_id[nested.parent]  # type: ignore[index]
    assert (to_writer.body.sender, to_writer.body.recipient) == ("editor", "writer")  # type: ignore[union-attr]
    to_editor = by_id[to_writer.parent]  # type: ignore[index]
    assert (to_editor.body.sender, to_editor.node, to_editor.parent) == ("user", "e", None)  # type: ignore[union-attr]
    assert own.parent == to_editor.id and own.agent == "editor"
    assert (nested.body.text, nested.body.cached, cached.body.cached) == ("alpha beta", False, True)  # type: ignore[union-attr]
    assert nested.body.digest and nested.body.model == "default"  # type: ignore[union-attr]
    # every message was vetted, and the decision names the message it was about
    decisions = [e for e in events if e.body.kind == "decision"]
    assert len(decisions) == 6 and all(by_id[d.parent].body.kind == "message" for d in decisions)  # type: ignore[index]
    # redacted before it reached the file
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("recordings.db*"))  # and its WAL
    assert b"ann@example.com" not in stored and b"[REDACTED:email]" in stored
    assert "[REDACTED:email]" in str(nested.body.request["prompt"])  # type: ignore[union-attr]
    # `agentmesh trace RUN_ID`: the causal tree and the timeline, or the events as JSON
    path = str(tmp_path / "recordings.db")
    shown = CliRunner().invoke(app, ["trace", result.run_id, "--recordings", path])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    call = next(i for i, line in enumerate(lines) if "call editor -> writer.write" in line)
    model = next(i for i, line in enumerate(lines) if "model default: 3 in, 2 tokens" in line)
    indent = len(lines[model]) - len(lines[model].lstrip(" │├└─"))
    assert call < model and indent > len(lines[call]) - len(lines[call].lstrip(" │├└─"))
    assert "timeline" in shown.output and "node w succeeded (attempt 1)" in shown.output
    exported = CliRunner().invoke(app, ["trace", result.run_id, "--recordings", path, "--json"])
    assert [e["id"] for e in json.loads(exported.output)] == [e.id for e in events]
    missing = CliRunner().invoke(app, ["trace", "nope", "--recordings", path])
    assert missing.exit_code == 1 and "no recording" in missing.output


#: One node that searches the docs server (its tool call is what the tests look for).
SEARCH = Plan(
    goal="search",
    steps=[
        PlanStep(
            id="t", agent="tooler", skill="call_tool",
            args={"tool": "docs.search_docs", "args": {"query": "ray"}},
        )
    ],
)  # fmt: skip


async def test_tool_calls_are_recorded_with_their_results(
    ray_session: None, tmp_path: Path
) -> None:
    plan = SEARCH
    async with Mesh(
        [DocsTooler],
        tools=[DOCS],
        policy=POLICY,
        run_store=tmp_path / "runs.db",
        recorder=tmp_path / "recordings.db",
    ) as mesh:
        result = await mesh.run("search", planner=TemplatePlanner(lambda goal: plan))
        [call] = [e for e in mesh.events(result.run_id) if e.body.kind == "tool_call"]
    assert call.agent == "tooler" and call.node == "t"
    body = call.body
    assert (body.tool, body.server, body.arguments) == (
        "docs.search_docs",
        "docs",
        {"query": "ray"},
    )  # type: ignore[union-attr]
    assert body.text == result.output and not body.is_error  # type: ignore[union-attr]


class BrokenRecorder:
    """A recorder whose disk is full."""

    def append(self, events: list[RunEvent]) -> None:
        raise OSError("no space left on device")

    def events(self, run_id: str) -> list[RunEvent]:
        return []


async def test_a_failing_recorder_fails_no_run_and_off_records_nothing(
    ray_session: None, tmp_path: Path
) -> None:
    models = {"default": ScriptedModel(["a", "b"])}
    plan = Plan(
        goal="w", steps=[PlanStep(id="w", agent="writer", skill="write", args={"topic": "x"})]
    )
    planner = TemplatePlanner(lambda goal: plan)
    async with Mesh(
        [Writer], models=models, policy=OPEN_POLICY, run_store=tmp_path / "runs.db",
        recorder=BrokenRecorder(),
    ) as mesh:  # fmt: skip
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = await mesh.run("w", planner=planner)
        assert result.succeeded
        assert any("no space left" in str(w.message) for w in seen)
    path = tmp_path / "off.db"
    async with Mesh(
        [Writer], models=models, policy=OPEN_POLICY, run_store=tmp_path / "runs.db",
        recorder=path, record=False,
    ) as mesh:  # fmt: skip
        result = await mesh.run("w", planner=planner)
        assert mesh.events(result.run_id) == [] and not path.exists()


def test_the_recording_file_is_ours_or_refused(tmp_path: Path) -> None:
    recorder = SqliteRecorder(tmp_path / "r.db")
    assert recorder.events("none") == []
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"not a database at all, just bytes" * 10)
    with pytest.raises(RunStoreError):
        SqliteRecorder(foreign).events("x")


async def test_the_planners_model_calls_are_recorded_with_the_plan(
    ray_session: None, tmp_path: Path
) -> None:
    steps = [{"id": "w", "agent": "writer", "skill": "write", "args": {"topic": "x"},
              "description": "the writer writes topics"}]  # fmt: skip
    planner_model = ScriptedModel(["not a plan", json.dumps({"goal": "g", "steps": steps})])
    models = {"planner": planner_model, "default": ScriptedModel(["done"])}
    async with Mesh(
        [Writer], models=models, policy=OPEN_POLICY, run_store=tmp_path / "runs.db",
        recorder=tmp_path / "recordings.db",
    ) as mesh:  # fmt: skip
        result = await mesh.run("g", planner=ModelPlanner("planner", max_attempts=2))
        events = mesh.events(result.run_id)
    kinds = [(e.body.kind, e.node, e.agent) for e in events[:3]]
    assert kinds == [
        ("plan", None, None),
        ("model_call", None, "user"),
        ("model_call", None, "user"),
    ]
    first, second = events[1].body, events[2].body
    assert (first.text, second.text.startswith("{")) == ("not a plan", True)  # type: ignore[union-attr]
    assert "not a plan" in str(second.request["prompt"])  # type: ignore[union-attr]  # the re-prompt
    # the planner's reason for the step is recorded as the why of the node's message
    [call] = [e for e in events if e.body.kind == "message" and e.node == "w" and not e.body.reply]  # type: ignore[union-attr]
    assert call.why == "the plan's step w: the writer writes topics"

"""Deterministic replay: a recorded run again on its recorded answers, compared event by event;
on a changed mesh, where it diverged (changed calls live, side effects refused unless allowed).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmesh import (
    Divergence,
    Mesh,
    NoRecordingError,
    Plan,
    PlanStep,
    ReplayReport,
    RetryPolicy,
    RunEvent,
    TemplatePlanner,
    UnknownRunError,
)
from agentmesh._private.replay_diff import compare
from agentmesh.cli import app
from agentmesh.errors import ConfigError

from .durable_mesh import EFFECTS_ENV, effects
from .replay_mesh import (
    PLAN,
    build_mesh,
    build_new_model_mesh,
    build_read_only_mesh,
    build_terse_mesh,
)


class Recorded:
    """The recorded run every test replays, and the folder of its effect log."""

    def __init__(self, run_id: str, folder: Path) -> None:
        self.run_id = run_id
        self.folder = folder


@pytest.fixture(scope="module")
def recorded(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    root = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(EFFECTS_ENV, str(root / "effects"))
        env.setenv("AGENTMESH_STATE_DIR", str(root / "state"))

        async def record() -> str:
            async with build_mesh() as mesh:
                result = await mesh.run(PLAN.goal, planner=TemplatePlanner(lambda goal: PLAN))
            assert result.nodes[0].attempts == 2  # the model error was retried
            return result.run_id

        run_id = asyncio.run(record())
        assert [e["entry"] for e in effects(root / "effects")] == ["a line"]
        yield Recorded(run_id, root / "effects")


def _entries(recorded: Recorded) -> list[str]:
    return [e["entry"] for e in effects(recorded.folder)]


async def _replay(mesh: Mesh, run_id: str, **options: bool) -> ReplayReport:
    async with mesh:
        return await mesh.replay(run_id, **options)


async def test_a_replay_on_the_same_mesh_is_identical_and_calls_nothing(
    recorded: Recorded,
) -> None:
    mesh = build_mesh()
    async with mesh:
        report = await mesh.replay(recorded.run_id)
        model_calls = await mesh.model_handle("m").calls.remote()
        events = mesh.events(report.replay_run_id)
        stored = mesh.run_store.get_run(report.replay_run_id)  # type: ignore[union-attr]
    assert report.identical, [d.describe() for d in report.divergences]
    assert report.divergences == [] and report.first is None and report.error is None
    assert report.output == "recorded a line"
    counts = report.counts
    assert (counts.served_model_calls, counts.served_tool_calls) == (3, 3)
    assert (counts.live_model_calls, counts.live_tool_calls, counts.unused) == (0, 0, 0)
    assert counts.recorded == 6
    assert model_calls == []  # every answer, the model error too, came from the recording
    assert _entries(recorded) == ["a line"]  # the effect was not made again
    # the replay is a run of its own, recorded, its served calls marked as such
    assert stored.output == "recorded a line" and stored.nodes[0].attempts == 2
    calls = [e.body for e in events if e.body.kind in ("model_call", "tool_call")]
    assert len(calls) == 6 and all(c.replayed for c in calls)  # type: ignore[union-attr]
    # each tool call names the pinned definition it was checked against
    tools = [c for c in calls if c.kind == "tool_call"]
    assert all(c.definition for c in tools) and len({c.definition for c in tools}) == 2


async def test_a_changed_prompt_diverges_at_that_call_and_its_effect_is_refused(
    recorded: Recorded,
) -> None:
    report = await _replay(build_terse_mesh(), recorded.run_id)
    assert not report.identical
    first = report.first
    assert first is not None and (first.kind, first.node, first.agent) == (
        "model_call",
        "write",
        "writer",
    )
    assert first.expected is not None and first.got is not None
    assert "Write one line" in json.dumps(first.expected.body.request)  # type: ignore[union-attr]
    assert "Be terse" in json.dumps(first.got.body.request)  # type: ignore[union-attr]
    # the reader's calls were unchanged: served; the writer's went live, its effect refused
    assert report.counts.served_model_calls == 2 and report.counts.live_model_calls == 2
    refused = [
        d.got.body.error.type  # type: ignore[union-attr]
        for d in report.divergences
        if d.kind == "tool_call" and d.got is not None and d.got.body.error is not None  # type: ignore[union-attr]
    ]
    assert refused == ["ReplayEffectError"]
    assert report.error is not None and report.error.type == "RunFailedError"
    assert any(d.kind == "output" for d in report.divergences)
    assert _entries(recorded) == ["a line"]
    assert "model_call #0" in first.describe()


async def test_live_effects_let_a_changed_call_act(recorded: Recorded) -> None:
    before = _entries(recorded)
    report = await _replay(build_terse_mesh(), recorded.run_id, live_effects=True)
    assert not report.identical and report.error is None
    assert report.counts.live_tool_calls == 1
    # the live model's script starts again: an error (retried), then its first words
    assert _entries(recorded) == [*before, "notes on mesh"]
    assert report.output == "recorded notes on mesh"


async def test_a_new_model_version_answers_live_from_the_first_call(recorded: Recorded) -> None:
    report = await _replay(build_new_model_mesh(), recorded.run_id)
    # the reader's, the writer's, and the writer's retry after its new line was refused
    assert report.counts.served_model_calls == 0 and report.counts.live_model_calls == 3
    first = report.first
    assert first is not None and (first.kind, first.node) == ("model_call", "read")
    assert first.got is not None and first.got.body.text == "other notes"  # type: ignore[union-attr]
    assert first.expected is not None and first.expected.body.error is not None  # type: ignore[union-attr]


async def test_a_changed_policy_shows_where_it_refuses(recorded: Recorded) -> None:
    report = await _replay(build_read_only_mesh(), recorded.run_id)
    assert report.counts.served_model_calls == 3  # every model call as recorded
    denied = [
        d for d in report.divergences if d.node == "write" and d.kind in ("tool_call", "decision")
    ]
    assert denied, [d.describe() for d in report.divergences]
    assert report.error is not None and _entries(recorded)[0] == "a line"


async def test_a_replanned_run_replays_its_recorded_revision(recorded: Recorded) -> None:
    def check(step: str, source: str) -> Plan:
        return Plan(goal="check", steps=[PlanStep(id=step, agent="reader", skill="check",
                                                  args={"source": source})])  # fmt: skip

    planner = TemplatePlanner(lambda goal: check("c", "bad"), revise=lambda _: check("c2", "ok"))
    async with build_mesh() as mesh:
        result = await mesh.run("check", planner=planner)
        assert [r.plan.steps[0].id for r in result.revisions] == ["c"]
        report = await mesh.replay(result.run_id)  # the planner is not asked again
        replayed = mesh.run_store.get_run(report.replay_run_id)  # type: ignore[union-attr]
    assert report.identical, [d.describe() for d in report.divergences]
    assert report.output == result.output == "ok: key absent"
    assert [r.plan.steps[0].id for r in replayed.revisions] == ["c"]
    assert replayed.plan.steps[0].id == "c2"


async def test_bad_replays_are_refused_with_typed_errors(recorded: Recorded) -> None:
    mesh = build_mesh()
    async with mesh:
        with pytest.raises(UnknownRunError):
            await mesh.replay("run-that-never-was")
        recorder, mesh.recorder = mesh.recorder, None
        unrecorded = await mesh.run(PLAN.goal, planner=TemplatePlanner(lambda goal: PLAN))
        with pytest.raises(ConfigError, match="record=True"):
            await mesh.replay(recorded.run_id)  # a replay is compared through its recording
        mesh.recorder = recorder
        with pytest.raises(NoRecordingError, match=unrecorded.run_id):
            await mesh.replay(unrecorded.run_id)
        with pytest.raises(ConfigError, match="not both"):
            await mesh.replay(recorded.run_id, retry=RetryPolicy(), max_retries=1)
        # a replay with fewer retries than the run had: the retried node now fails for good
        strict = await mesh.replay(recorded.run_id, max_retries=0)
    assert not strict.identical and strict.error is not None
    first = strict.first
    # the recorded second attempt of node read (its call, its transition) never came
    assert first is not None and first.node == "read" and first.got is None
    [ended] = [d for d in strict.divergences if d.kind == "node" and d.node == "read"]
    assert ended.got is not None and ended.got.body.status == "failed"  # type: ignore[union-attr]


def test_the_cli_checks_a_run_and_shows_where_a_change_diverges(recorded: Recorded) -> None:
    runner = CliRunner()
    same = runner.invoke(app, ["replay", recorded.run_id])
    assert same.exit_code == 0, same.output
    assert "identical" in same.output and "3 model call(s), 3 tool call(s)" in same.output
    changed = runner.invoke(
        app, ["replay", recorded.run_id, "--with", "tests.replay_mesh:build_terse_mesh", "--json"]
    )
    assert changed.exit_code == 0, changed.output
    report = ReplayReport.model_validate_json(changed.output)
    assert not report.identical and report.first is not None and report.first.node == "write"
    missing = runner.invoke(app, ["replay", "run-that-never-was"])
    assert missing.exit_code == 1 and "UnknownRunError" in missing.output


def test_the_cli_exits_1_when_the_run_does_not_reproduce(recorded: Recorded) -> None:
    """Replayed on a changed mesh named as the run's own (--mesh): a failed check."""
    runner = CliRunner()
    result = runner.invoke(
        app, ["replay", recorded.run_id, "--mesh", "tests.replay_mesh:build_terse_mesh"]
    )
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "first: node write, agent writer" in result.output
    assert os.environ.get(EFFECTS_ENV)  # the fixture's folders are still the factories'


# --- comparing recordings (no mesh) -------------------------------------------------------------


def _event(seq: int, body: dict[str, object], *, node: str = "n", agent: str = "a") -> RunEvent:
    return RunEvent.model_validate(
        {"run_id": "r", "id": f"e{seq}", "seq": seq, "at": float(seq), "node": node,
         "agent": agent, "body": body}
    )  # fmt: skip


def _tool(seq: int, text: str, *, agent: str = "a", replayed: bool = False) -> RunEvent:
    body = {"kind": "tool_call", "tool": "s.t", "arguments": {"x": 1}, "text": text,
            "latency_s": seq / 10, "replayed": replayed}  # fmt: skip
    return _event(seq, body, agent=agent)


def test_compare_ignores_what_changes_between_runs_and_order_within_an_agent() -> None:
    original = [_tool(1, "one"), _tool(2, "two", agent="b")]
    # other times, latencies, ids and order; served from the recording: still the same
    replay = [_tool(7, "two", agent="b", replayed=True), _tool(9, "one", replayed=True)]
    assert compare(original, replay) == []
    swapped = [_tool(1, "one"), _tool(2, "two")]
    assert compare(swapped, list(reversed(swapped))) == []
    # an id made at random in a text (a quarantine id) is not a difference; other text is
    quarantined = [_tool(1, "held as q-" + "3f" * 16)]
    assert compare(quarantined, [_tool(1, "held as q-" + "a0" * 16)]) == []
    assert compare(quarantined, [_tool(1, "kept as q-" + "a0" * 16)]) != []


def test_compare_reports_each_difference_where_it_broke_away() -> None:
    original = [_tool(1, "one"), _tool(2, "two", agent="b"), _tool(3, "three")]
    replay = [_tool(1, "one"), _tool(2, "TWO", agent="b")]  # a's second call is missing
    found = compare(original, replay)
    # both broke away after one matched event (a's first); then the recording's order
    assert [(d.agent, d.index) for d in found] == [("b", 0), ("a", 1)]
    changed, missing = found
    assert isinstance(changed, Divergence) and changed.got is not None
    assert changed.expected is not None and changed.expected.seq == 2
    assert missing.expected is not None and missing.got is None
    assert "got nothing" in missing.describe()
    extra = compare([], [_tool(5, "new")])
    assert len(extra) == 1 and extra[0].expected is None
    assert "expected nothing" in extra[0].describe()

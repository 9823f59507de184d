"""Durable runs: checkpoints in the run store, resume, idempotency keys, and the CLI.

The mesh is tests/durable_mesh.py: a worker whose every tool effect is a line in a log file
written by a real (sandboxed) stdio MCP server, so each test counts the effects that really
happened. Killing a driver for real is tests/test_runs_kill.py.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmesh import (
    ConfigError,
    LedgerEntry,
    Mesh,
    NodeCheckpoint,
    NodeStatus,
    Plan,
    PlanStep,
    PlanValidationError,
    RunFailedError,
    RunFinishedError,
    RunInfo,
    RunState,
    RunStoreError,
    SqliteRunStore,
    ToolGrant,
    ToolResult,
    UnknownRunError,
)
from agentmesh.cli import app
from agentmesh.planner import TemplatePlanner

from .durable_mesh import EFFECTS_ENV, FACTORY, build_mesh, effects


def fixed(*steps: PlanStep, output: str | None = None) -> TemplatePlanner:
    return TemplatePlanner(lambda goal: Plan(goal=goal, steps=list(steps), output=output))


def act(step_id: str, entry: str, **args: object) -> PlanStep:
    inputs = args.pop("inputs", {})
    assert isinstance(inputs, dict)
    return PlanStep(
        id=step_id, agent="worker", skill="act", args={"entry": entry, **args}, inputs=inputs
    )


def count(folder: Path, entry: str) -> int:
    return sum(e["entry"] == entry for e in effects(folder))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The effect server's folder (made by the mesh, in its sandbox) and the run store's file."""
    base = tmp_path_factory.mktemp("durable")
    return base / "effects", base / "runs.db"


@pytest.fixture(scope="module")
async def durable(ray_session: None, folders: tuple[Path, Path]) -> AsyncIterator[Mesh]:
    folder, db = folders
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(EFFECTS_ENV, str(folder))
        mesh = build_mesh()
        mesh.run_store = SqliteRunStore(db)
        async with mesh:
            yield mesh


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# --- the store on its own ------------------------------------------------------------------------


def stored_run(run_id: str, plan: Plan) -> RunInfo:
    nodes = [NodeCheckpoint(step_id=s.id, agent=s.agent, skill=s.skill) for s in plan.steps]
    return RunInfo(
        run_id=run_id,
        goal=plan.goal,
        plan=plan,
        state=RunState.RUNNING,
        created_at=1.0,
        updated_at=1.0,
        factory=FACTORY,
        nodes=nodes,
    )


def test_store_round_trip(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "sub" / "runs.db")  # the folder is made
    grant = ToolGrant(tool="mail.send", args={"to": "alice@example.com"})
    plan = Plan(
        goal="g",
        steps=[
            PlanStep(id="x", agent="a", skill="s", args={"n": 1}, tools=[grant]),
            PlanStep(id="y", agent="a", skill="s", inputs={"n": "x"}),
        ],
        output="y",
    )
    store.create_run(stored_run("r1", plan))
    with pytest.raises(RunStoreError, match="already"):
        store.create_run(stored_run("r1", plan))
    done = NodeCheckpoint(
        step_id="x", agent="a", skill="s", status=NodeStatus.SUCCEEDED, attempts=2, output=[1, 2]
    )
    store.save_nodes("r1", [done.model_copy(update={"inputs": {"n": 1}})])
    store.set_state("r1", RunState.FAILED)
    info = store.get_run("r1")
    assert info.plan == plan and info.plan.steps[0].tools == [grant]
    assert info.state is RunState.FAILED and info.factory == FACTORY
    assert info.node("x").output == [1, 2] and info.node("x").inputs == {"n": 1}
    assert info.node("x").attempts == 2 and info.node("y").status is NodeStatus.PENDING
    assert info.updated_at > info.created_at
    [summary] = store.list_runs()
    assert (summary.run_id, summary.nodes_done, summary.nodes_total) == ("r1", 1, 2)

    result = ToolResult(server="m", tool="send", is_error=False, text="sent", duration_s=0.1)
    entry = LedgerEntry(
        key="k1", run_id="r1", step_id="x", tool="m.send", result=result, recorded_at=2
    )
    assert store.get_effect("k1") is None
    store.put_effect(entry)
    store.put_effect(entry.model_copy(update={"result": result.model_copy(update={"text": "2"})}))
    assert store.get_effect("k1") == entry  # the first record of a key stands
    assert store.effect_keys("r1", "x") == ["k1"] and store.effect_keys("r1", "y") == []


def test_store_unknown_runs(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "runs.db")
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        store.get_run("nope")
    with pytest.raises(UnknownRunError):
        store.save_nodes("nope", [NodeCheckpoint(step_id="x", agent="a", skill="s")])
    with pytest.raises(UnknownRunError):
        store.set_state("nope", RunState.FAILED)


def test_store_refuses_files_that_are_not_its_own(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all, just some bytes\n" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        db.execute("INSERT INTO invoices VALUES (1, 42.0)")
    newer = tmp_path / "newer.db"
    SqliteRunStore(newer).list_runs()  # a store of the current schema
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    cases = [
        (garbage, "not a database"),
        (foreign, "another program's SQLite database"),
        (newer, "schema 99"),
        (tmp_path, "unable to open"),  # a folder
    ]
    for path, why in cases:
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(RunStoreError, match=why):
            SqliteRunStore(path).list_runs()
        with pytest.raises(RunStoreError, match=why):
            SqliteRunStore(path).get_run("r1")
        if before is not None:
            assert path.read_bytes() == before, path  # left as it was
    with sqlite3.connect(foreign) as db:
        assert db.execute("SELECT amount FROM invoices").fetchall() == [(42.0,)]


def test_mesh_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        build_mesh_with(factory="not a path")
    with pytest.raises(ConfigError, match="RunStore or a path"):
        build_mesh_with(run_store=42)


def build_mesh_with(**options: object) -> Mesh:
    from .durable_mesh import POLICY, Worker

    return Mesh([Worker], policy=POLICY, **options)  # type: ignore[arg-type]


# --- checkpoints, retries and resume in a mesh ---------------------------------------------


async def test_run_is_checkpointed_after_every_node(
    durable: Mesh, folders: tuple[Path, Path]
) -> None:
    folder, _db = folders
    a, b = unique("a"), unique("b")
    planner = fixed(act("a", a), act("b", b, inputs={"after": "a"}), output="b")
    result = await durable.run("checkpointed", planner=planner, run_id=unique("run"))
    info = durable.run_store.get_run(result.run_id)
    assert info.state is RunState.SUCCEEDED and info.factory == FACTORY
    assert info.output == result.output == f"recorded {a} recorded {b}"
    node_a, node_b = info.node("a"), info.node("b")
    assert node_a.status is node_b.status is NodeStatus.SUCCEEDED
    assert node_a.attempts == node_b.attempts == 1
    assert node_a.inputs == {"entry": a} and node_a.output == f"recorded {a}"
    assert node_b.inputs == {"entry": b, "after": f"recorded {a}"}  # resolved from upstream
    assert node_b.label is not None and node_b.label == result.node("b").label
    assert node_b.started_at and node_b.ended_at and node_b.task_id
    summary = next(s for s in durable.run_store.list_runs() if s.run_id == result.run_id)
    assert (summary.state, summary.nodes_done, summary.nodes_total) == ("succeeded", 2, 2)
    # each side-effecting call carried its key to the server and left it in the ledger
    [line] = [e for e in effects(folder) if e["entry"] == b]
    assert line["key"].startswith(f"{result.run_id}:b:")
    entry = durable.run_store.get_effect(line["key"])
    assert entry is not None and (entry.run_id, entry.step_id) == (result.run_id, "b")
    assert entry.tool == "effects.record" and entry.result.text == f"recorded {b}"


async def test_retried_node_does_not_repeat_its_effect(
    durable: Mesh, folders: tuple[Path, Path]
) -> None:
    folder, _db = folders
    direct, nested = unique("direct"), unique("nested")
    planner = fixed(
        act("direct", direct, fail_first=True),
        PlanStep(
            id="nested",
            agent="delegator",
            skill="delegate",
            args={"entry": nested, "fail_first": True},
        ),
    )
    result = await durable.run("retried", planner=planner, max_retries=1)
    assert result.node("direct").attempts == 2 and result.node("nested").attempts == 2
    assert result.node("direct").output == f"recorded {direct}"  # the recorded result
    assert result.node("nested").output == f"recorded {nested}"
    assert count(folder, direct) == 1 and count(folder, nested) == 1
    [line] = [e for e in effects(folder) if e["entry"] == nested]
    assert line["key"].startswith(f"{result.run_id}:nested:")  # a nested call keeps its node


async def test_calls_outside_runs_carry_no_key_and_reads_none(
    durable: Mesh, folders: tuple[Path, Path]
) -> None:
    folder, _db = folders
    entry = unique("loose")
    for _ in range(2):  # no run, no node: nothing to deduplicate by, each call is an effect
        assert await durable.call("worker", "act", entry=entry) == f"recorded {entry}"
    assert [e["key"] for e in effects(folder) if e["entry"] == entry] == ["", ""]
    planner = fixed(PlanStep(id="p", agent="worker", skill="peek", args={"entry": "x"}))
    result = await durable.run("read", planner=planner)
    assert result.output == "x: key absent"  # read-only tools get no key


async def test_resume_runs_only_what_is_not_done(
    durable: Mesh, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _db = folders
    flag = tmp_path / "flag"
    a, b, c, side = unique("a"), unique("b"), unique("c"), unique("side")
    planner = fixed(
        act("a", a),
        act("b", b, require=str(flag), inputs={"after": "a"}),
        act("c", c, inputs={"after": "b"}),
        act("side", side),
        output="c",
    )
    with pytest.raises(RunFailedError) as info:
        await durable.run("resumable", planner=planner)
    run_id = info.value.result.run_id
    stored = durable.run_store.get_run(run_id)
    assert stored.state is RunState.FAILED
    statuses = {n.step_id: n.status for n in stored.nodes}
    assert statuses == {"a": "succeeded", "b": "failed", "c": "skipped", "side": "succeeded"}
    assert stored.node("b").error is not None and "missing" in stored.node("b").error.message
    assert [count(folder, e) for e in (a, b, c, side)] == [1, 1, 0, 1]

    flag.write_text("now it may go on")
    result = await durable.resume_run(run_id)
    assert result.run_id == run_id and result.succeeded
    assert result.output == f"recorded {a} recorded {b} recorded {c}"  # kept outputs flow on
    # a and side kept their first run's records; b's effect came from the ledger, not again
    assert result.node("a") == stored.node("a").record()
    assert result.node("side") == stored.node("side").record()
    assert result.node("b").attempts == 1
    assert [count(folder, e) for e in (a, b, c, side)] == [1, 1, 1, 1]
    finished = durable.run_store.get_run(run_id)
    assert finished.state is RunState.SUCCEEDED and finished.output == result.output
    assert all(n.status is NodeStatus.SUCCEEDED for n in finished.nodes)

    with pytest.raises(RunFinishedError, match=run_id):
        await durable.resume_run(run_id)
    assert [count(folder, e) for e in (a, b, c, side)] == [1, 1, 1, 1]


async def test_resume_refuses_bad_runs(durable: Mesh, folders: tuple[Path, Path]) -> None:
    folder, _db = folders
    with pytest.raises(UnknownRunError):
        await durable.resume_run("no-such-run")
    with pytest.raises(ConfigError, match="run id"):
        await durable.run("x", planner=fixed(act("a", "x")), run_id="bad id with spaces")
    # a stored plan that no longer fits the mesh: refused whole, nothing runs or changes
    plan = Plan(goal="gone", steps=[PlanStep(id="v", agent="worker", skill="vanished")])
    run_id = unique("stale")
    durable.run_store.create_run(stored_run(run_id, plan))
    with pytest.raises(PlanValidationError, match="no skill 'vanished'"):
        await durable.resume_run(run_id)
    assert durable.run_store.get_run(run_id) == stored_run(run_id, plan)
    taken = unique("taken")
    await durable.run("once", planner=fixed(act("a", unique("t"))), run_id=taken)
    twice = unique("twice")
    with pytest.raises(RunStoreError, match="already"):
        await durable.run("twice", planner=fixed(act("a", twice)), run_id=taken)
    assert count(folder, twice) == 0  # refused before anything ran


async def test_a_store_that_cannot_be_used_stops_the_run_before_it_starts(
    durable: Mesh, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _db = folders
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00garbage" * 200)
    usable = durable.run_store
    durable.run_store = str(garbage)  # type: ignore[assignment]  # a path is taken as SQLite
    entry = unique("never")
    try:
        with pytest.raises(RunStoreError, match="not a database"):
            await durable.run("doomed", planner=fixed(act("a", entry)))
    finally:
        durable.run_store = usable
    assert count(folder, entry) == 0 and garbage.read_bytes() == b"\x00garbage" * 200


# --- the command line ----------------------------------------------------------------------


async def test_cli_lists_runs_and_refuses_bad_resumes(
    durable: Mesh, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    _folder, db = folders
    run_id = unique("listed")
    await durable.run("listed goal", planner=fixed(act("a", unique("l"))), run_id=run_id)
    runner = CliRunner()
    out = runner.invoke(app, ["runs", "--json", "--store", str(db)])
    assert out.exit_code == 0, out.output
    listed = {r["run_id"]: r for r in json.loads(out.output)}
    assert listed[run_id]["state"] == "succeeded" and listed[run_id]["goal"] == "listed goal"
    assert (listed[run_id]["nodes_done"], listed[run_id]["nodes_total"]) == (1, 1)
    table = runner.invoke(app, ["runs", "--store", str(db)])
    assert table.exit_code == 0 and run_id in table.output and "1/1" in table.output

    finished = runner.invoke(app, ["resume", run_id, "--store", str(db)])
    assert finished.exit_code == 1 and "RunFinishedError" in finished.output
    unknown = runner.invoke(app, ["resume", "nope", "--store", str(db)])
    assert unknown.exit_code == 1 and "UnknownRunError" in unknown.output
    stale = unique("stale")
    plan = Plan(goal="g", steps=[PlanStep(id="v", agent="worker", skill="act")])
    durable.run_store.create_run(stored_run(stale, plan))
    for factory, why in [
        ("not a factory", "package.module:function"),
        ("tests.nowhere:f", "cannot import"),
    ]:
        bad = runner.invoke(app, ["resume", stale, "--store", str(db), "--mesh", factory])
        assert bad.exit_code == 1 and "ConfigError" in bad.output and why in bad.output
    garbage = tmp_path / "garbage.db"
    garbage.write_text("no database here\n" * 50)
    broken = runner.invoke(app, ["runs", "--store", str(garbage)])
    assert broken.exit_code == 1 and "RunStoreError" in broken.output

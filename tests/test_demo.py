"""The demo end to end: the example mesh, its MCP server, its policy, and the CLI."""

from __future__ import annotations

import json
import re

import pytest
import ray
from typer.testing import CliRunner

from agentmesh import ScriptedModel
from agentmesh.cli import app
from agentmesh.examples.demo import DEMO_GOAL, run_demo
from agentmesh.examples.docs_server import INJECTED_DOC_ID


async def test_demo_with_scripted_model(ray_session: None) -> None:
    report = await run_demo(model=ScriptedModel([" small models close to the data."]))
    result = report.result
    assert result.succeeded and [n.step_id for n in result.nodes] == [
        "gather",
        "outline",
        "compose",
    ]
    brief = result.output
    assert isinstance(brief, dict)
    assert brief["summary"] == f"In short, {DEMO_GOAL} means small models close to the data."
    assert brief["summary_model"] == "scripted:scripted"
    assert INJECTED_DOC_ID not in brief["sources"] and len(brief["sources"]) == 2
    assert brief["review"]["words"] > 40
    gather = result.node("gather").output
    assert isinstance(gather, dict)
    [skipped] = gather["skipped"]
    assert skipped["doc_id"] == INJECTED_DOC_ID and skipped["quarantine_id"]
    # the planted injection is held whole in quarantine, not dropped
    [held] = report.quarantine
    assert (
        held.id == skipped["quarantine_id"] and "IGNORE ALL PREVIOUS INSTRUCTIONS" in held.content
    )
    kinds = {(d.kind, d.principal, d.target, d.verdict) for d in report.decisions}
    assert ("tool_result", "researcher", "docs.read_doc", "quarantine") in kinds
    assert ("message", "writer", "analyst.review", "allow") in kinds
    assert ("tool_call", "analyst", "docs.word_count", "allow") in kinds
    # the agents declare spread, which on one node puts them all on it
    node = ray.get_runtime_context().get_node_id()
    assert report.placement == {a: [node] for a in ("researcher", "analyst", "writer")}


def test_cli_agents_prints_cards() -> None:
    out = CliRunner().invoke(app, ["agents"])
    assert out.exit_code == 0, out.output
    for name in ("researcher", "analyst", "writer", "gather", "compose", "review"):
        assert name in out.output
    as_json = CliRunner().invoke(app, ["agents", "--json"])
    assert as_json.exit_code == 0 and '"supportedInterfaces"' in as_json.output


@pytest.mark.llama
def test_cli_demo_runs_the_real_model(ray_session: None) -> None:
    pytest.importorskip("llama_cpp")
    out = CliRunner().invoke(app, ["demo", "--goal", DEMO_GOAL])
    assert out.exit_code == 0, out.output
    for text in (
        "Task DAG",
        "gather",
        "outline",
        "compose",
        "succeeded",
        "quarantine",
        "docs.read_doc",
        "Security decisions",
        "Brief: running agents at the edge",
    ):
        assert text in out.output, text
    # the run was flight-recorded, the real model's call with the weights' digest
    run_id = re.search(r"agentmesh trace (run-[\w-]+)", out.output.replace("\n", " "))
    assert run_id is not None, out.output
    shown = CliRunner().invoke(app, ["trace", run_id.group(1), "--json"])
    assert shown.exit_code == 0, shown.output
    [call] = [e["body"] for e in json.loads(shown.output) if e["body"]["kind"] == "model_call"]
    assert call["model"] == "local" and call["digest"].startswith("sha256:") and call["text"]
    # and it replays exactly, the model's answer served from the recording
    replayed = CliRunner().invoke(app, ["replay", run_id.group(1)])
    assert replayed.exit_code == 0, replayed.output
    assert "identical" in replayed.output, replayed.output
    assert "served from the recording: 1 model call(s)" in replayed.output

"""OpenTelemetry export of recorded runs: GenAI spans for agents, models and tools, decision
events, and token and duration metrics, caught by the SDK's in-memory exporter and reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentmesh import ConfigError, Mesh, ModelEntry, Plan, PlanStep, ScriptedModel, TemplatePlanner
from agentmesh.telemetry import Telemetry

from .mesh_agents import DOCS, POLICY
from .test_models import POLICY as OPEN_POLICY
from .test_models import Editor, Writer
from .test_recording import SEARCH, DocsTooler


def _tracing() -> tuple[InMemorySpanExporter, TracerProvider]:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    return spans, tracing


async def test_a_run_exports_genai_spans_and_metrics(ray_session: None, tmp_path: Path) -> None:
    spans, tracing = _tracing()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracing, meter_provider=MeterProvider(metric_readers=[reader]), content=True
    )
    models = {"default": ModelEntry(spec=ScriptedModel(["alpha beta", "edited"]), version="7")}
    plan = Plan(
        goal="edit", steps=[PlanStep(id="e", agent="editor", skill="edit", args={"topic": "t"})]
    )
    async with Mesh(
        [Writer, Editor], models=models, policy=OPEN_POLICY, run_store=tmp_path / "runs.db",
        recorder=tmp_path / "rec.db", telemetry=telemetry,
    ) as mesh:  # fmt: skip
        result = await mesh.run("edit", planner=TemplatePlanner(lambda goal: plan))
    finished = {s.name: s for s in spans.get_finished_spans()}
    root = finished["invoke_workflow edit"]
    assert root.attributes["agentmesh.run.id"] == result.run_id  # type: ignore[index]
    editor, writer = finished["invoke_agent editor"], finished["invoke_agent writer"]
    assert editor.parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert writer.parent.span_id == editor.context.span_id  # type: ignore[union-attr]
    models_spans = [s for s in spans.get_finished_spans() if s.name == "text_completion default"]
    assert len(models_spans) == 2
    nested = next(s for s in models_spans if s.parent.span_id == writer.context.span_id)  # type: ignore[union-attr]
    attributes = nested.attributes or {}
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert (attributes["gen_ai.request.model"], attributes["agentmesh.model.version"]) == (
        "default",
        "7",
    )
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        3,
        2,
    )
    assert attributes["gen_ai.output.messages"] == "alpha beta"
    assert nested.start_time <= nested.end_time  # type: ignore[operator]
    verdicts = [e.attributes["verdict"] for e in editor.events]  # type: ignore[index]
    assert verdicts == ["allow", "allow"]  # the call and its reply, on the call's span
    names = {m.name for rm in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
             for sm in rm.scope_metrics for m in sm.metrics}  # fmt: skip
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= names
    assert "agentmesh.security.decisions" in names


async def test_tool_calls_export_as_execute_tool_spans(ray_session: None, tmp_path: Path) -> None:
    spans, tracing = _tracing()
    async with Mesh(
        [DocsTooler], tools=[DOCS], policy=POLICY, run_store=tmp_path / "runs.db",
        recorder=tmp_path / "rec.db", telemetry=Telemetry(tracer_provider=tracing),
    ) as mesh:  # fmt: skip
        await mesh.run("search", planner=TemplatePlanner(lambda goal: SEARCH))
    [tool] = [s for s in spans.get_finished_spans() if s.name == "execute_tool docs.search_docs"]
    assert tool.attributes["gen_ai.tool.name"] == "docs.search_docs"  # type: ignore[index]
    assert "gen_ai.tool.call.arguments" not in (tool.attributes or {})  # content is opt-in


def test_telemetry_needs_the_recording() -> None:
    with pytest.raises(ConfigError, match="record=True"):
        Mesh([Writer], models={"default": ScriptedModel()}, record=False, telemetry=Telemetry())

"""OpenTelemetry traces and metrics of runs, opt-in and vendor-neutral.

``Mesh(telemetry=Telemetry())`` exports every recorded run through the OpenTelemetry API:
the process's global tracer and meter providers unless others are given, so whatever SDK and
exporter the user configured (OTLP, Jaeger, the console, an in-memory one in tests) receives
them. Spans follow the GenAI semantic conventions: a run is an ``invoke_workflow`` span, each
node's skill call an ``invoke_agent`` span, each model call a ``chat``/``text_completion`` span
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``, ...), each tool call an
``execute_tool`` span; security decisions are events on the span of the message they judged.
Metrics: ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` histograms,
and ``agentmesh.security.decisions`` by verdict.

The spans are made from the run's flight recording when the run ends, with the recorded
times: nothing is exported for a run that is not recorded, and a long run's spans arrive at
its end. Prompts and answers go into spans only with ``content=True`` (they are redacted).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ConfigDict

from agentmesh.recording import RunEvent

__all__ = ["Telemetry", "export_run"]

_NS = 1_000_000_000


class Telemetry(BaseModel):
    """Where a mesh's runs go as OpenTelemetry traces and metrics."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    tracer_provider: Any = None
    """A ``TracerProvider``; None: the global one."""
    meter_provider: Any = None
    """A ``MeterProvider``; None: the global one."""
    content: bool = False
    """Put prompts, answers and tool arguments (redacted) on the spans."""


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


def export_run(goal: str, events: list[RunEvent], telemetry: Telemetry) -> None:
    """Export one run's recording as spans and metrics (see the module docstring)."""
    if not events:
        return
    tracer = trace.get_tracer("agentmesh", tracer_provider=telemetry.tracer_provider)
    meter = metrics.get_meter("agentmesh", meter_provider=telemetry.meter_provider)
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    decisions = meter.create_counter("agentmesh.security.decisions", unit="{decision}")
    run_id = events[0].run_id
    end = max(e.at for e in events)
    root = tracer.start_span(
        f"invoke_workflow {goal[:60]}",
        start_time=_ns(events[0].at),
        kind=SpanKind.INTERNAL,
        attributes={"gen_ai.operation.name": "invoke_workflow", "agentmesh.run.id": run_id},
    )
    spans: dict[str, Any] = {}  # event id -> the span it opened (a call's, for its children)
    ending: list[tuple[Any, int]] = []  # calls' spans, ended last: their vets add events
    replies = {e.parent: e for e in events if e.body.kind == "message" and e.body.reply}
    for event in events:
        body = event.body
        parent = spans.get(event.parent or "", root)
        context = trace.set_span_in_context(parent)
        if body.kind == "message" and not body.reply:
            reply = replies.get(event.id)
            span = tracer.start_span(
                f"invoke_agent {body.recipient}",
                context=context,
                start_time=_ns(event.at),
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": body.recipient,
                    "agentmesh.skill": body.skill,
                    "agentmesh.sender": body.sender,
                    "agentmesh.node": event.node or "",
                    "agentmesh.task.id": body.task_id,
                },
            )
            if reply is not None and reply.body.kind == "message" and reply.body.error:
                span.set_status(Status(StatusCode.ERROR, reply.body.error.type))
            spans[event.id] = span
            ending.append((span, _ns(reply.at if reply is not None else end)))
        elif body.kind == "decision":
            parent.add_event(
                "agentmesh.security.decision",
                timestamp=_ns(event.at),
                attributes={"verdict": body.verdict, "rule": body.rule, "check": body.decision},
            )
            decisions.add(1, {"verdict": body.verdict, "check": body.decision})
        elif body.kind == "model_call":
            operation = "chat" if body.request.get("system") else "text_completion"
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": "agentmesh",
                "gen_ai.request.model": body.asked or body.model,  # a model or a route
                "gen_ai.response.model": body.model,
                "gen_ai.usage.input_tokens": body.prompt_tokens,
                "gen_ai.usage.output_tokens": body.completion_tokens,
                "agentmesh.model.version": body.version or "",
                "agentmesh.model.digest": body.digest or "",
                "agentmesh.cache.hit": body.cached,
            }
            for key in ("max_tokens", "temperature", "seed"):
                if body.request.get(key) is not None:
                    attributes[f"gen_ai.request.{key}"] = body.request[key]
            if telemetry.content:
                attributes["gen_ai.input.messages"] = str(body.request.get("prompt", ""))
                attributes["gen_ai.output.messages"] = body.text
            failed = body.error.type if body.error else None
            _timed_span(tracer, f"{operation} {body.model}", event, context, attributes, failed)
            common = {
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": body.asked or body.model,
            }
            tokens.record(body.prompt_tokens, {**common, "gen_ai.token.type": "input"})
            tokens.record(body.completion_tokens, {**common, "gen_ai.token.type": "output"})
            duration.record(body.latency_s, common)
        elif body.kind == "tool_call":
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": body.tool,
                "agentmesh.tool.server": body.server,
            }
            if telemetry.content:
                attributes["gen_ai.tool.call.arguments"] = str(body.arguments)
            failed = body.error.type if body.error else ("tool error" if body.is_error else None)
            _timed_span(tracer, f"execute_tool {body.tool}", event, context, attributes, failed)
    for span, at in reversed(ending):
        span.end(end_time=at)
    root.end(end_time=_ns(end))


def _timed_span(
    tracer: Any,
    name: str,
    event: RunEvent,
    context: Any,
    attributes: dict[str, Any],
    failed: str | None,
) -> None:
    """A finished call's span: it ended when it was recorded and lasted its latency."""
    latency = getattr(event.body, "latency_s", 0.0)
    span = tracer.start_span(
        name,
        context=context,
        start_time=_ns(event.at - latency),
        kind=SpanKind.CLIENT,
        attributes=attributes,
    )
    if failed is not None:
        span.set_status(Status(StatusCode.ERROR, failed))
    span.end(end_time=_ns(event.at))

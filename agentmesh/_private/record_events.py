"""Building the flight recorder's events where they happen (see ``record_sink``)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import JsonValue

from agentmesh._private.decisions import Decision
from agentmesh._private.record_sink import SINK, Json, note, redacted
from agentmesh._private.redact import redact
from agentmesh.errors import AgentMeshError
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.protocols.mcp import ToolResult
from agentmesh.recording import ModelCallEvent, ToolCallEvent
from agentmesh.results import ErrorInfo

__all__ = [
    "adopt",
    "error_info",
    "note_call",
    "note_decision",
    "note_model_call",
    "note_reply",
    "note_tool_call",
]


def error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=redact(str(exc)[:2000]))


def note_decision(decision: Any, *, parent: str | None) -> None:
    """Record a vet's decision (an error a vet raised instead is recorded by its caller)."""
    if not isinstance(decision, Decision) or SINK.get() is None:
        return
    body: Json = {
        "kind": "decision",
        "seq": decision.seq,
        "decision": decision.kind,
        "principal": decision.principal,
        "target": decision.target,
        "verdict": str(decision.verdict),
        "rule": decision.rule,
        "reason": decision.reason,  # redacted by the security actor
    }
    note(body, agent=decision.principal, parent=parent, why=decision.reason)


def note_call(
    sender: str, agent: str, skill: str, task_id: str, args: dict[str, JsonValue]
) -> str | None:
    """Record a skill call; its event id (None when nothing records)."""
    if SINK.get() is None:
        return None
    body: Json = {
        "kind": "message", "sender": sender, "recipient": agent, "skill": skill,
        "task_id": task_id, "reply": False, "content": redacted(args), "error": None,
    }  # fmt: skip
    return note(body, agent=sender)


def note_reply(
    sender: str,
    agent: str,
    skill: str,
    task_id: str,
    *,
    parent: str | None,
    result: JsonValue = None,
    error: AgentMeshError | None = None,
) -> None:
    """Record the answer of ``agent`` to ``sender``'s call: its result or its error."""
    if SINK.get() is None:
        return
    body: Json = {
        "kind": "message", "sender": agent, "recipient": sender, "skill": skill,
        "task_id": task_id, "reply": True, "content": redacted(result),
        "error": error_info(error).model_dump() if error is not None else None,
    }  # fmt: skip
    note(body, agent=agent, parent=parent)


def adopt(events: list[dict[str, JsonValue]], *, parent: str | None) -> None:
    """Take a callee's events into the current sink; its top-level ones under ``parent``."""
    sink = SINK.get()
    if sink is None or not events:
        return
    for event in events:
        if event.get("parent") is None:
            event["parent"] = parent
        sink.append(event)


def note_model_call(
    agent: str,
    name: str,
    request: GenerateRequest,
    started: float,
    *,
    response: GenerateResponse | None = None,
    error: AgentMeshError | None = None,
    replayed: bool = False,
) -> None:
    """Record a model call ``agent`` made to ``name`` (a model or a route); ``replayed``: its
    answer came from the recording a replay serves."""
    if SINK.get() is None:
        return
    answer = response or GenerateResponse(
        text="", model=name, backend="", prompt_tokens=0, completion_tokens=0, duration_s=0,
        finish_reason="error",
    )  # fmt: skip
    served = answer.served_by or name
    why = None
    if served != name or answer.fallbacks:
        tried = f" after {', '.join(answer.fallbacks)} failed" if answer.fallbacks else ""
        why = f"route {name!r} chose {served!r}{tried}"
    body = ModelCallEvent(
        model=served,
        asked=name,
        backend=answer.backend,
        backend_model=answer.model if response is not None else "",
        version=answer.version,
        digest=answer.digest,
        request=redacted(request.model_dump(mode="json")),  # type: ignore[arg-type]
        text=redact(answer.text),
        tool_calls=[redacted(c.model_dump(mode="json")) for c in answer.tool_calls],  # type: ignore[misc]
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        latency_s=time.perf_counter() - started,
        cached=answer.cached,
        fallbacks=answer.fallbacks,
        finish_reason=answer.finish_reason,
        replayed=replayed,
        error=error_info(error) if error is not None else None,
    )
    note(body, agent=agent, why=why)


def note_tool_call(
    agent: str,
    tool: str,
    args: dict[str, JsonValue],
    started: float | None,
    *,
    result: ToolResult | None = None,
    error: AgentMeshError | None = None,
    replayed: bool = False,
) -> None:
    """Record a tool call (``started`` None: served from the task's journal, not made;
    ``replayed``: the security actor served it from the recording a replay serves)."""
    if SINK.get() is None:
        return
    body = ToolCallEvent(
        tool=tool,
        server=result.server if result is not None else "",
        definition=result.definition_hash if result is not None else None,
        arguments=redacted(args),  # type: ignore[arg-type]
        text=redact(result.text) if result is not None else "",
        is_error=result.is_error if result is not None else False,
        structured=redacted(result.structured) if result is not None else None,
        latency_s=time.perf_counter() - started if started is not None else 0.0,
        replayed=replayed or started is None,
        error=error_info(error) if error is not None else None,
    )
    note(body, agent=agent)

"""The flight recorder's events: what happened in a run, in order, with its causes.

Every run of ``Mesh.run`` records into a :class:`Recorder` (by default a SQLite file beside
the run store): the plan and every revision, each node's transitions (attempts, retries,
errors, approvals), each message between principals and its reply, each model call (model,
version, weights digest, the whole request, the answer, tokens, latency, cache hit) and each
tool call (arguments and result), each security decision about the run. Every event names its
run, node and agent, its time, and the event that caused it (``parent``: a model call's parent
is the message that started the task that made it), plus the rationale recorded with it where
the mesh has one (``why``: why this model answered, say).

Texts are redacted (secrets and personal data, ``agentmesh.redact``) before they are stored.

The recording is written from the driver: an agent's model and tool calls and its own
messages ride back to it in the task's final status (as its usage does), so no process but
the driver writes the file and a recording costs no extra Ray call. What a task that failed
had done before it failed is lost with it; its failure is recorded.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentmesh.planner import Plan
from agentmesh.results import ErrorInfo, NodeApproval, NodeStatus

__all__ = [
    "ApprovalEvent",
    "DecisionEvent",
    "EventBody",
    "MessageEvent",
    "ModelCallEvent",
    "NodeEvent",
    "PlanEvent",
    "Recorder",
    "RunEvent",
    "ToolCallEvent",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanEvent(_Body):
    """The plan a run started with (``revision`` 0) or a re-planned one."""

    kind: Literal["plan"] = "plan"
    plan: Plan
    revision: int = 0


class NodeEvent(_Body):
    """A node's transition: running (an attempt), succeeded, failed (with the error), skipped,
    waiting (for a human)."""

    kind: Literal["node"] = "node"
    status: NodeStatus
    attempt: int
    """Attempts made so far (0 when its first starts)."""
    error: ErrorInfo | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    """Every failed attempt so far, with the retry it led to (``retry_in_s``)."""
    output: JsonValue = None
    approvals: list[NodeApproval] = Field(default_factory=list)
    """A waiting node's questions to a human (redacted)."""


class ApprovalEvent(_Body):
    """A human's answer to a waiting node's question (``Mesh.approve_run``); the event's
    ``agent`` is who answered."""

    kind: Literal["approval"] = "approval"
    question: str
    tool: str | None = None
    answer: bool


class MessageEvent(_Body):
    """A skill call from ``sender`` to ``recipient`` (``reply``: the answer coming back)."""

    kind: Literal["message"] = "message"
    sender: str
    recipient: str
    skill: str
    task_id: str = ""
    reply: bool = False
    content: JsonValue = None
    """The arguments (a call) or the result (a reply), redacted."""
    error: ErrorInfo | None = None


class ModelCallEvent(_Body):
    """One answered or failed model call."""

    kind: Literal["model_call"] = "model_call"
    model: str
    """The model that answered (a route's choice; the name asked for when none did)."""
    asked: str | None = None
    """The model or route the agent asked for."""
    backend: str = ""
    backend_model: str = ""
    """The backend that answered and its own name for the model (GenerateResponse.backend
    and .model: a llama.cpp weights file, say)."""
    version: str | None = None
    digest: str | None = None
    request: dict[str, JsonValue]
    """The whole GenerateRequest, redacted."""
    text: str = ""
    tool_calls: list[dict[str, JsonValue]] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    fallbacks: list[str] = Field(default_factory=list)
    finish_reason: str = ""
    replayed: bool = False
    """Served from the recording being replayed (``Mesh.replay``), not generated."""
    error: ErrorInfo | None = None


class ToolCallEvent(_Body):
    """One tool call through the security actor."""

    kind: Literal["tool_call"] = "tool_call"
    tool: str
    server: str = ""
    definition: str | None = None
    """The hash of the tool's pinned definition the call was checked against."""
    arguments: dict[str, JsonValue]
    text: str = ""
    is_error: bool = False
    structured: JsonValue = None
    latency_s: float = 0.0
    replayed: bool = False
    """Served from the task's own journal (a resumed task) or from the recording being
    replayed (``Mesh.replay``), not called again."""
    error: ErrorInfo | None = None


class DecisionEvent(_Body):
    """A security decision about the run (the security actor's record, reason redacted)."""

    kind: Literal["decision"] = "decision"
    seq: int
    decision: str
    """``kind`` of the check: message, reply, tool_call, tool_result."""
    principal: str
    target: str
    verdict: str
    rule: str
    reason: str


EventBody = Annotated[
    PlanEvent
    | NodeEvent
    | MessageEvent
    | ModelCallEvent
    | ToolCallEvent
    | DecisionEvent
    | ApprovalEvent,
    Field(discriminator="kind"),
]


class RunEvent(BaseModel):
    """One recorded event of a run."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    id: str
    """Unique within the run; what ``parent`` names."""
    seq: int = 0
    """Its place in the run's recording (set by the recorder: the order events arrived)."""
    at: float
    node: str | None = None
    agent: str | None = None
    """The agent that did it (the sender of a message, the caller of a model or tool)."""
    parent: str | None = None
    why: str | None = None
    body: EventBody

    def describe(self) -> str:
        """One line about the event (plain text), as ``agentmesh trace`` shows it."""
        body = self.body
        if body.kind == "plan":
            steps = ", ".join(s.id for s in body.plan.steps)
            return f"plan (revision {body.revision}): {steps}"
        if body.kind == "node":
            error = f": {body.error.type}: {body.error.message}" if body.error else ""
            return f"node {self.node} {body.status.value} (attempt {body.attempt}){error}"
        if body.kind == "message":
            what = "reply" if body.reply else "call"
            error = f" failed: {body.error.type}" if body.error else ""
            return f"{what} {body.sender} -> {body.recipient}.{body.skill}{error}"
        if body.kind == "approval":
            return f"approval {'yes' if body.answer else 'no'} by {self.agent}: {body.question}"
        if body.kind == "decision":
            who = f"{body.principal} -> {body.target}"
            return f"vet {body.decision} {who}: {body.verdict} ({body.rule})"
        replayed = " (replayed)" if body.replayed else ""
        if body.kind == "model_call":
            got = f"error {body.error.type}" if body.error else f"{body.completion_tokens} tokens"
            hit = ", cached" if body.cached else ""
            return (
                f"model {body.model}: {body.prompt_tokens} in, {got}, {body.latency_s:.3f}s"
                f"{hit}{replayed}"
            )
        error = f" error {body.error.type}" if body.error else ""
        return f"tool {body.tool}{replayed}{error}"


class Recorder(Protocol):
    """Where a mesh's recordings go (``SqliteRecorder`` by default)."""

    def append(self, events: list[RunEvent]) -> None:
        """Store ``events`` (in order) after those already stored for their runs."""
        ...

    def events(self, run_id: str) -> list[RunEvent]:
        """A run's events in recorded order ([] if it has none)."""
        ...

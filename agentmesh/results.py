"""What a run leaves behind: each node's record (status, attempts, errors, approvals, output
and its provenance label) and the run's result, with the plans re-planning replaced.

Plain pydantic models, shared by the executor that fills them, the run store that keeps them
and the CLI that shows them (re-exported by :mod:`agentmesh.executor`).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, JsonValue

from agentmesh.models import Usage
from agentmesh.planner import Plan
from agentmesh.provenance import Label
from agentmesh.retry import GiveUp

__all__ = [
    "ErrorInfo",
    "NodeApproval",
    "NodeRecord",
    "NodeStatus",
    "PlanRevision",
    "RunResult",
]


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    """For a human's answer (see :class:`NodeApproval`); the run pauses once nothing else can
    run, and the store keeps it ``paused``."""


class ErrorInfo(BaseModel):
    type: str
    message: str
    attempt: int | None = None
    """In ``NodeRecord.errors``: the attempt that failed (0: refused before any call)."""
    retry_in_s: float | None = None
    """In ``NodeRecord.errors``: the backoff before the next attempt (None: none followed)."""


class NodeApproval(BaseModel):
    """A question a node put to a human: its plan step's own ``approval`` (``key`` None) or
    one exact tool call the policy wants approved (``tool``, and ``key``: the tool and a hash
    of its arguments). A yes lets the node run again with that call approved once."""

    question: str
    tool: str | None = None
    key: str | None = None
    answer: bool | None = None
    """None: not answered yet."""
    answered_by: str | None = None
    answered_at: float | None = None


class NodeRecord(BaseModel):
    """What happened to one step."""

    step_id: str
    agent: str
    skill: str
    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    task_id: str | None = None
    output: JsonValue = None
    error: ErrorInfo | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    """Every failed attempt's error, in order (kept when a retry succeeds)."""
    gave_up: GiveUp | None = None
    """Why the retries stopped, when the node failed (see :data:`agentmesh.retry.GiveUp`)."""
    label: Label | None = None
    """The provenance of ``output`` (untrusted if the node read untrusted data)."""
    approvals: list[NodeApproval] = Field(default_factory=list)
    """The questions this node put to a human, answered or not, in order."""
    usage: Usage | None = None
    """The node's model calls (nested agents' included) when it succeeded; None: none."""

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class PlanRevision(BaseModel):
    """A plan a run gave up on when a node failed for good, and how its nodes ended; the run
    went on with the planner's revised plan (see :class:`~agentmesh.planner.Replanner`)."""

    plan: Plan
    nodes: list[NodeRecord]
    revised_at: float


class RunResult(BaseModel):
    """A finished run: the plan, every node's record, and the output step's result."""

    run_id: str
    goal: str
    plan: Plan
    """The plan that ran last (the original, unless the run was re-planned)."""
    succeeded: bool
    output: JsonValue = None
    nodes: list[NodeRecord]
    started_at: float
    ended_at: float
    revisions: list[PlanRevision] = Field(default_factory=list)
    """The plans replaced by re-planning, oldest first, each with its nodes as they ended."""

    def node(self, step_id: str) -> NodeRecord:
        """The node of step ``step_id`` (KeyError if the plan has none)."""
        for node in self.nodes:
            if node.step_id == step_id:
                return node
        raise KeyError(f"no step {step_id!r} in run {self.run_id!r}")

    @property
    def usage(self) -> Usage:
        """The model usage of the plan's nodes, summed: tokens, cost, cache hits and the
        tokens they saved, per model version (the run summary's figures)."""
        return Usage.total_of([n.usage for n in self.nodes if n.usage is not None])

    def usage_by_agent(self) -> dict[str, Usage]:
        """The model usage of the plan's nodes, per agent (a node counts its nested calls)."""
        by_agent: dict[str, Usage] = {}
        for node in self.nodes:
            if node.usage is not None:
                by_agent.setdefault(node.agent, Usage()).merge(node.usage)
        return by_agent

    @property
    def paused(self) -> bool:
        """Whether the run waits for a human: a node waits and none failed."""
        statuses = {n.status for n in self.nodes}
        return NodeStatus.WAITING in statuses and NodeStatus.FAILED not in statuses

"""Durable runs: what a run store keeps, so a run outlives the process that started it.

The executor checkpoints a run after every node transition (pending -> running -> succeeded,
failed or skipped) into a :class:`RunStore`: the plan, each node's record with the inputs it
was given, and the run's state. ``Mesh.resume_run(run_id)`` (or ``agentmesh resume RUN_ID``)
then finishes a run whose driver died, running only the nodes that had not succeeded.

Side-effecting tool calls made inside a run also leave a :class:`LedgerEntry` under an
idempotency key (see :mod:`agentmesh._private.idempotency`): a retried or resumed node that
makes the same call again gets the recorded result back instead of repeating the effect.

The store is a protocol so it can live in a server database; ``SqliteRunStore`` (stdlib
``sqlite3``, one file; :mod:`agentmesh._private.run_sqlite`) is the default. Its methods are
synchronous: the executor calls them in a worker thread, and the ledger from a Ray actor on the
driver's node.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentmesh._private.tool_vetting import STATE_DIR_ENV
from agentmesh.models import Usage
from agentmesh.planner import Plan
from agentmesh.protocols.mcp import ToolResult
from agentmesh.results import NodeRecord, NodeStatus, PlanRevision

__all__ = [
    "LedgerEntry",
    "NodeCheckpoint",
    "RunInfo",
    "RunState",
    "RunStore",
    "RunSummary",
    "default_runs_path",
]


class RunState(StrEnum):
    """Where a run stands. ``running`` also covers a run whose driver died: resume it.
    ``paused``: nodes wait for a human's approval (``agentmesh approve``)."""

    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class NodeCheckpoint(NodeRecord):
    """A node's record as stored: the executor's record plus the inputs it ran with."""

    inputs: dict[str, JsonValue] | None = None
    """The skill's arguments (literal ``args`` and resolved upstream ``inputs``); None until the
    node starts, or when an upstream path could not be resolved."""

    def record(self) -> NodeRecord:
        """The plain executor record (what a RunResult holds)."""
        return NodeRecord.model_validate(self.model_dump(exclude={"inputs"}))


class RunInfo(BaseModel):
    """One run as the store keeps it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    goal: str
    plan: Plan
    state: RunState
    created_at: float
    updated_at: float
    factory: str | None = None
    """The ``module:function`` that builds the run's mesh (how ``agentmesh resume`` gets it)."""
    output: JsonValue = None
    nodes: list[NodeCheckpoint] = Field(default_factory=list)
    revisions: list[PlanRevision] = Field(default_factory=list)
    """The plans re-planning replaced, oldest first (``plan`` is the one in force)."""

    def node(self, step_id: str) -> NodeCheckpoint:
        """The node of step ``step_id`` (KeyError if the plan has none)."""
        for node in self.nodes:
            if node.step_id == step_id:
                return node
        raise KeyError(f"no step {step_id!r} in run {self.run_id!r}")

    def summary(self) -> RunSummary:
        done = sum(n.status is NodeStatus.SUCCEEDED for n in self.nodes)
        usage = Usage.total_of([n.usage for n in self.nodes if n.usage is not None])
        return RunSummary(
            model_calls=usage.calls,
            tokens=usage.tokens,
            cost=usage.cost,
            cache_hits=usage.cache_hits,
            saved_tokens=usage.saved_tokens,
            run_id=self.run_id,
            goal=self.goal,
            state=self.state,
            nodes_done=done,
            nodes_total=len(self.plan.steps),
            created_at=self.created_at,
            updated_at=self.updated_at,
            factory=self.factory,
        )


class RunSummary(BaseModel):
    """A line of ``agentmesh runs``."""

    run_id: str
    goal: str
    state: RunState
    nodes_done: int
    nodes_total: int
    created_at: float
    updated_at: float
    factory: str | None = None
    model_calls: int = 0
    """The model usage of its nodes: calls (cache hits included), tokens processed, cost,
    cache hits and the tokens they saved (see :class:`~agentmesh.models.Usage`)."""
    tokens: int = 0
    cost: float = 0.0
    cache_hits: int = 0
    saved_tokens: int = 0


class LedgerEntry(BaseModel):
    """A side-effecting tool call that completed, under its idempotency key."""

    key: str
    run_id: str
    step_id: str
    tool: str
    result: ToolResult
    recorded_at: float


@runtime_checkable
class RunStore(Protocol):
    """Where runs are checkpointed. Implementations must be picklable (the ledger's actor gets
    a copy) and safe to call from several threads and processes at once."""

    @property
    def location(self) -> str:
        """Where it keeps its data, for messages (a path or a database URL without secrets)."""
        ...

    def create_run(self, run: RunInfo) -> None:
        """Store a new run (RunStoreError if its id is taken)."""

    def save_nodes(self, run_id: str, nodes: Sequence[NodeCheckpoint]) -> None:
        """Replace the stored records of these nodes and touch the run's ``updated_at``, in one
        transaction (the executor writes the transitions of many nodes at once)."""

    def set_state(self, run_id: str, state: RunState, *, output: JsonValue = None) -> None:
        """Set the run's state (and its output, once it succeeded)."""

    def revise_plan(
        self, run_id: str, plan: Plan, revision: PlanRevision, nodes: list[NodeCheckpoint]
    ) -> None:
        """At once: put ``plan`` in force (state running), append ``revision`` (the plan it
        replaces, as it ended) and replace every node record with ``nodes``."""

    def get_run(self, run_id: str) -> RunInfo:
        """The run with every node; UnknownRunError if there is none."""
        ...

    def list_runs(self) -> list[RunSummary]:
        """Every run, the most recently updated first."""
        ...

    def effect_keys(self, run_id: str, step_id: str) -> list[str]:
        """The keys of the completed side-effecting calls of one node."""
        ...

    def get_effect(self, key: str) -> LedgerEntry | None:
        """The completed side-effecting call of idempotency key ``key``, if there is one."""
        ...

    def put_effect(self, entry: LedgerEntry) -> None:
        """Record a completed side-effecting call (a second entry for a key is ignored)."""


def default_runs_path() -> Path:
    """``$AGENTMESH_STATE_DIR/runs.db``, else ``./.agentmesh/runs.db`` (beside the tool pins)."""
    state = os.environ.get(STATE_DIR_ENV)
    return (Path(state) if state else Path.cwd() / ".agentmesh") / "runs.db"

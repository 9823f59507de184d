"""Deterministic replay of a recorded run: what ``Mesh.replay`` and ``agentmesh replay`` report.

A replay runs a recorded run's plan again (and its recorded re-plans, the planner is not asked
again) on a mesh, with every model and tool answer served from the run's flight recording
wherever the call is unchanged (see ``agentmesh._private.replay_tape``), and records itself
like any run. Then its recording is compared with the original's, event by event within
each node and agent: the plan, each node's transitions and output, the messages between
agents, the model calls (request and answer), the tool calls (arguments and result) and the
security decisions, and last the run's final output. Volatile parts are left out (times, ids,
latencies, error messages: an error compares by its type; ids made at random inside texts,
such as a quarantine id, compare as a placeholder). Events of one agent in one node
that came in another order but are otherwise the same count as the same (concurrent calls
finish in any order).

Replaying on the run's own mesh verifies it is reproducible: :attr:`ReplayReport.identical`.
Replaying on a changed mesh (a prompt, a model, a policy, an agent's code) shows where the
execution diverged: :attr:`ReplayReport.first` is where it first broke away from the recorded
course, and calls whose inputs changed went live (``counts``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from agentmesh.recording import RunEvent
from agentmesh.results import ErrorInfo

__all__ = ["Divergence", "ReplayCounts", "ReplayReport"]


class ReplayCounts(BaseModel):
    """Where a replay's model and tool answers came from."""

    model_config = ConfigDict(extra="forbid")

    recorded: int = 0
    """Model and tool answers the recording held for the replay to serve."""
    served_model_calls: int = 0
    served_tool_calls: int = 0
    live_model_calls: int = 0
    """Model calls the recording held no answer for (changed inputs, a changed model)."""
    live_tool_calls: int = 0
    """Tool calls the recording held no answer for (made live, or refused: side effects)."""
    unused: int = 0
    """Recorded answers the replay never asked for."""


class Divergence(BaseModel):
    """One place where the replay differs from the recording."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "plan", "node", "message", "model_call", "tool_call", "decision", "approval", "output"
    ]
    node: str | None = None
    agent: str | None = None
    index: int = 0
    """Which of this node's events of this kind by this agent (0: the first)."""
    expected: RunEvent | None = None
    """The recording's event there (None: the replay has one the recording lacks)."""
    got: RunEvent | None = None
    """The replay's event there (None: the replay lacks it)."""
    expected_output: JsonValue = None
    """For ``kind="output"``: the recorded run's final output."""
    got_output: JsonValue = None

    def describe(self) -> str:
        """One line: where, what was recorded, what the replay did."""
        if self.kind == "output":
            return f"final output: expected {self.expected_output!r}, got {self.got_output!r}"
        where = f"node {self.node}" if self.node else "run"
        if self.agent:
            where += f", agent {self.agent}"
        expected = self.expected.describe() if self.expected else "nothing"
        got = self.got.describe() if self.got else "nothing"
        return f"{where}, {self.kind} #{self.index}: expected {expected}; got {got}"


class ReplayReport(BaseModel):
    """The outcome of a replay."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    """The recorded run."""
    replay_run_id: str
    """The replay, a run of its own in the run store and the recorder."""
    identical: bool
    """The replay did exactly what the recording did (no divergence at all)."""
    divergences: list[Divergence]
    """Each node's and agent's first difference per kind, the earliest break first."""
    counts: ReplayCounts
    output: JsonValue = None
    """The replay's final output."""
    error: ErrorInfo | None = None
    """How the replay run failed, if it did (a failure the recording shares is not a
    divergence)."""

    @property
    def first(self) -> Divergence | None:
        """Where the execution first diverged from the recording (None: it did not)."""
        return self.divergences[0] if self.divergences else None

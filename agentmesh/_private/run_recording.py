"""One run's flight recording, written from the driver.

The driver records the plan and every revision, each node transition, and, around each skill
call a node makes, whatever the call's sink gathered (see ``record_sink``): the driver's own
message and its vets, and every event the agents' tasks sent back. Events are numbered in the
order they arrive here and written by group commit in a worker thread, off the run's critical
path: a run waits for its recording only when it ends. They stay JSON objects until the
recorder has them (``SqliteRecorder`` writes them as they are; another recorder gets them as
validated ``RunEvent``). A recorder that fails (a full disk) does not fail the run: the error
is kept and warned about, and the rest of the run is not recorded.
"""

from __future__ import annotations

import asyncio
import warnings

from agentmesh._private.record_sink import Json, event, redacted
from agentmesh._private.redact import redact
from agentmesh.planner import Plan
from agentmesh.recording import PlanEvent, Recorder, RunEvent
from agentmesh.results import ErrorInfo, NodeApproval, NodeRecord, NodeStatus

__all__ = ["RunRecording", "record_answers"]


class RunRecording:
    """The events of one run on their way to ``recorder``."""

    def __init__(self, recorder: Recorder, run_id: str) -> None:
        self.recorder = recorder
        self.run_id = run_id
        self.error: Exception | None = None
        self._pending: list[Json] = []
        self._writer: asyncio.Task[None] | None = None
        self._calls: dict[str, str] = {}  # node -> its last call's message event (a parent)
        self._why: dict[str, str] = {}  # node -> the planner's reason for its step
        self.kept: list[Json] | None = None  # every event, when telemetry exports them

    def plan(self, plan: Plan, revision: int) -> None:
        why = "re-planned after a node failed for good" if revision else "the planner's plan"
        self._why = {
            s.id: f"the plan's step {s.id}: {redact(s.description)}"
            for s in plan.steps
            if s.description
        }
        steps = [s.model_copy(update={"args": redacted(s.args)}) for s in plan.steps]
        plan = plan.model_copy(update={"goal": redact(plan.goal), "steps": steps})
        body = PlanEvent(plan=plan, revision=revision).model_dump(mode="json")
        self._queue([event(body, why=why, run_id=self.run_id)])

    def node(self, record: NodeRecord) -> None:
        """A node transition, as the run store gets it."""
        done = record.status is NodeStatus.SUCCEEDED
        body: Json = {
            "kind": "node",
            "status": record.status.value,
            "attempt": record.attempts,
            "error": _redacted(record.error),
            "errors": [_redacted(e) for e in record.errors],
            "output": redacted(record.output) if done else None,
            "approvals": [
                redacted(a.model_dump(mode="json"))
                for a in record.approvals
                if record.status is NodeStatus.WAITING
            ],
        }
        node = record.step_id
        parent = self._calls.get(node)
        self._queue([event(body, agent=record.agent, parent=parent, run_id=self.run_id, node=node)])

    def call(self, node: str | None, events: list[Json]) -> None:
        """What one skill call of ``node`` gathered in its sink."""
        for recorded in events:
            recorded["run_id"], recorded["node"] = self.run_id, node
        if node is not None and events:
            self._calls[node] = str(events[0]["id"])  # the node's message: later events' parent
            if events[0].get("why") is None and node in self._why:
                events[0]["why"] = self._why[node]  # why the planner chose this agent
        self._queue(events)

    def events(self) -> list[RunEvent]:
        """The events kept for telemetry, validated."""
        return [RunEvent.model_validate(e) for e in self.kept or []]

    async def close(self) -> None:
        """Wait until every event is written (or the recorder failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._pending and self.error is None:
            self._start()
            await self.close()

    def _queue(self, events: list[Json]) -> None:
        if self.kept is not None:
            self.kept.extend(events)
        if self.error is not None or not events:
            return
        self._pending.extend(events)
        if self._writer is None or self._writer.done():
            self._start()

    def _start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._pending and self.error is None:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(_append, self.recorder, batch)
            except Exception as exc:  # the run goes on unrecorded; said once, loudly
                self.error = exc
                warnings.warn(
                    f"run {self.run_id}: the flight recorder failed ({exc}); the rest of the "
                    "run is not recorded",
                    RuntimeWarning,
                    stacklevel=1,
                )


def record_answers(
    recorder: Recorder, run_id: str, step_id: str, answered: list[NodeApproval], by: str
) -> None:
    """Record a human's answers to a paused run's node (outside any run's recording: the
    run is not running). A failing recorder warns, as in a run."""
    batch = [
        event(
            {"kind": "approval", "question": redact(a.question), "tool": a.tool,
             "answer": bool(a.answer)},
            agent=by, run_id=run_id, node=step_id,
        )
        for a in answered
    ]  # fmt: skip
    try:
        _append(recorder, batch)
    except Exception as exc:
        warnings.warn(f"run {run_id}: the flight recorder failed ({exc})", RuntimeWarning, 2)


def _append(recorder: Recorder, batch: list[Json]) -> None:
    """Hand a batch to the recorder: as JSON objects to one that takes them, else validated."""
    append_json = getattr(recorder, "append_json", None)
    if append_json is not None:
        append_json(batch)
    else:
        recorder.append([RunEvent.model_validate(e) for e in batch])


def _redacted(error: ErrorInfo | None) -> Json | None:
    if error is None:
        return None
    return error.model_copy(update={"message": redact(error.message)}).model_dump()

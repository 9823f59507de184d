"""One run's flight recording, written from the driver.

The driver records the plan and every revision, each node transition, and, around each skill
call a node makes, whatever the call's sink gathered (see ``record_sink``): the driver's own
message and its vets, and every event the agents' tasks sent back. Events are numbered in the
order they arrive here and written by group commit in a worker thread, off the run's critical
path: a run waits for its recording only when it ends. A recorder that fails (a full disk)
does not fail the run: the error is kept and warned about, and the rest of the run is not
recorded.
"""

from __future__ import annotations

import asyncio
import time
import warnings

from agentmesh._private.record_sink import SinkEvent, new_event_id, redacted
from agentmesh._private.redact import redact
from agentmesh.planner import Plan
from agentmesh.recording import EventBody, NodeEvent, PlanEvent, Recorder, RunEvent
from agentmesh.results import ErrorInfo, NodeRecord, NodeStatus

__all__ = ["RunRecording"]


class RunRecording:
    """The events of one run on their way to ``recorder``."""

    def __init__(self, recorder: Recorder, run_id: str) -> None:
        self.recorder = recorder
        self.run_id = run_id
        self.error: Exception | None = None
        self._pending: list[RunEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._calls: dict[str, str] = {}  # node -> its last call's message event (a parent)
        self.kept: list[RunEvent] | None = None  # every event, when telemetry exports them

    def add(self, body: EventBody, *, node: str | None = None, agent: str | None = None) -> str:
        """Record an event of the driver's own; its id."""
        event = RunEvent.model_construct(
            run_id=self.run_id, id=new_event_id(), at=time.time(), node=node, agent=agent,
            parent=self._calls.get(node) if node else None, body=body,
        )  # fmt: skip
        self._queue([event])
        return event.id

    def plan(self, plan: Plan, revision: int) -> None:
        why = "re-planned after a node failed for good" if revision else "the planner's plan"
        steps = [s.model_copy(update={"args": redacted(s.args)}) for s in plan.steps]
        plan = plan.model_copy(update={"goal": redact(plan.goal), "steps": steps})
        event = RunEvent.model_construct(
            run_id=self.run_id, id=new_event_id(), at=time.time(), why=why,
            body=PlanEvent(plan=plan, revision=revision),
        )  # fmt: skip
        self._queue([event])

    def node(self, record: NodeRecord) -> None:
        """A node transition, as the run store gets it."""
        done = record.status is NodeStatus.SUCCEEDED
        body = NodeEvent.model_construct(
            status=record.status,
            attempt=record.attempts,
            error=_redacted(record.error),
            errors=[e for e in map(_redacted, record.errors) if e is not None],
            output=redacted(record.output) if done else None,
        )
        self.add(body, node=record.step_id, agent=record.agent)

    def call(self, node: str | None, events: list[SinkEvent]) -> None:
        """What one skill call of ``node`` gathered in its sink."""
        where = {"run_id": self.run_id, "node": node}
        stamped = [
            e.model_copy(update=where)
            if isinstance(e, RunEvent)
            else RunEvent.model_validate({**e, **where})
            for e in events
        ]
        if node is not None and stamped:
            self._calls[node] = stamped[0].id  # the node's message: its later events' parent
        self._queue(stamped)

    async def close(self) -> None:
        """Wait until every event is written (or the recorder failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._pending and self.error is None:
            self._start()
            await self.close()

    def _queue(self, events: list[RunEvent]) -> None:
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
                await asyncio.to_thread(self.recorder.append, batch)
            except Exception as exc:  # the run goes on unrecorded; said once, loudly
                self.error = exc
                warnings.warn(
                    f"run {self.run_id}: the flight recorder failed ({exc}); the rest of the "
                    "run is not recorded",
                    RuntimeWarning,
                    stacklevel=1,
                )


def _redacted(error: ErrorInfo | None) -> ErrorInfo | None:
    return error.model_copy(update={"message": redact(error.message)}) if error else None

"""Checkpointing one run's nodes into the run store, by group commit.

Every node transition (running, then succeeded, failed, skipped or waiting) is stored before
the executor goes on with that node: :meth:`RunCheckpointer.node` returns once the transaction
holding it has committed. Transitions that arrive while a commit is under way are written
together by the next one (a later transition of the same node replaces an earlier one not yet
written), so a wide fan-out costs a handful of commits instead of two per node, while a chain
still commits each transition as it happens. The store's calls are synchronous (sqlite3, or a
user's database client), so each runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pydantic import JsonValue

from agentmesh._private.run_recording import RunRecording
from agentmesh.errors import UserError
from agentmesh.executor import _resolve
from agentmesh.planner import Plan
from agentmesh.results import NodeRecord, NodeStatus, RunResult
from agentmesh.runs import NodeCheckpoint, RunState, RunStore

__all__ = ["RunCheckpointer"]


class RunCheckpointer:
    """The executor's Checkpoint for one run: each transition becomes a stored node record,
    with the inputs the node was given (resolved from the outputs seen so far), written by
    group commit (see the module docstring)."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        plan: Plan,
        kept: Iterable[NodeRecord],
        *,
        recording: RunRecording | None = None,
    ):
        self.store = store
        self.recording = recording  # hears every transition too
        self.run_id = run_id
        self.steps = {s.id: s for s in plan.steps}
        self.outputs: dict[str, JsonValue] = {r.step_id: r.output for r in kept}
        self._pending: dict[str, NodeCheckpoint] = {}
        self._batch: asyncio.Future[None] | None = None  # the commit the pending nodes wait on
        self._writer: asyncio.Task[None] | None = None

    def _inputs(self, record: NodeRecord) -> dict[str, JsonValue] | None:
        if record.status in (NodeStatus.PENDING, NodeStatus.SKIPPED):
            return None
        step = self.steps[record.step_id]
        try:
            resolved = {p: _resolve(ref, self.outputs) for p, ref in step.inputs.items()}
        except (UserError, KeyError):
            return None  # the node itself fails on it, with the reason on its record
        return {**step.args, **resolved}

    async def node(self, record: NodeRecord) -> None:
        if self.recording is not None:
            self.recording.node(record)
        if record.status is NodeStatus.SUCCEEDED:
            self.outputs[record.step_id] = record.output
        # copied here, on the loop: the executor goes on changing its records
        node = NodeCheckpoint.model_validate(
            {**record.model_dump(), "inputs": self._inputs(record)}
        )
        self._pending[node.step_id] = node  # a later transition of the same node replaces it
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        batch = self._batch
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(batch)  # a cancelled node does not cancel its neighbours' commit

    async def _write(self) -> None:
        """Commit what is pending, one transaction at a time, until nothing is."""
        while self._pending:
            nodes, self._pending = list(self._pending.values()), {}
            batch, self._batch = self._batch, None
            assert batch is not None
            try:
                await asyncio.to_thread(self.store.save_nodes, self.run_id, nodes)
            except Exception as exc:  # every node of the batch raises it
                batch.set_exception(exc)
            except BaseException:  # the loop is going away: so are the nodes waiting
                batch.cancel()
                raise
            else:
                batch.set_result(None)

    async def finish(self, result: RunResult) -> None:
        if result.succeeded:
            state = RunState.SUCCEEDED
        else:
            state = RunState.PAUSED if result.paused else RunState.FAILED
        await asyncio.to_thread(self.store.set_state, self.run_id, state, output=result.output)

"""Durable runs on a mesh: checkpoint every node into the run store, resume what is left.

The mesh hands plans here (``Mesh.run`` / ``Mesh.resume_run``); the executor itself only
reports transitions to a :class:`~agentmesh.executor.Checkpoint`. Store calls are synchronous
(sqlite3, or a user's database client), so each runs in a worker thread, off the event loop.
The ledger of side-effecting tool calls is an actor on the driver's node, started with the
first run and given to every security actor (see :mod:`agentmesh._private.idempotency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import cast

import networkx as nx
import ray
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agentmesh._private.effect_ledger import RunLedger
from agentmesh._private.node_retry import NodeRetrier
from agentmesh._private.record_sink import SINK, Json
from agentmesh._private.router import await_ray
from agentmesh._private.run_checkpoint import RunCheckpointer
from agentmesh._private.run_nodes import Revise, fresh_nodes, kept_after_revision, node_send
from agentmesh._private.run_recording import RunRecording, record_answers
from agentmesh._private.run_sqlite import SqliteRunStore
from agentmesh.errors import (
    AgentMeshError,
    ConfigError,
    NoApprovalPendingError,
    RunFailedError,
    RunFinishedError,
)
from agentmesh.executor import (
    NodeRecord,
    NodeStatus,
    PlanRevision,
    RunResult,
    Send,
    execute,
)
from agentmesh.models import Budget
from agentmesh.planner import Plan, SkillInfo, validate_plan
from agentmesh.recording import Recorder
from agentmesh.runs import RunInfo, RunState, RunStore
from agentmesh.telemetry import Telemetry, export_run

__all__ = ["DurableRuns", "check_factory", "check_run_id", "open_store"]

#: A node that failed with one of these fails its run for good: no re-planning.
_NOT_REPLANNED = frozenset({"ApprovalDenied", "BudgetExceededError"})

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"a run id is 1-128 letters, digits, '.', '_' or '-', not {str(run_id)[:140]!r}"
        )
    return run_id


def check_factory(factory: str | None) -> str | None:
    """A mesh factory is an import path ``package.module:function``."""
    if factory is not None and (not isinstance(factory, str) or not _FACTORY.match(factory)):
        raise ConfigError(
            f"a mesh factory is 'package.module:function', not {str(factory)[:140]!r}"
        )
    return factory


def open_store(store: RunStore | str | os.PathLike[str] | None) -> RunStore:
    """The store a Mesh was given: a RunStore as is, a path as SQLite, None as the default
    SQLite file (its path resolved now: actors and later calls may use another directory)."""
    if store is None or isinstance(store, str | os.PathLike):
        return SqliteRunStore(store)
    if not isinstance(store, RunStore):
        raise ConfigError(f"run_store is a RunStore or a path, not {type(store).__name__}")
    return store


class DurableRuns:
    """The runs of one mesh: its store, factory and ledger actor."""

    def __init__(
        self, store: RunStore, factory: str | None, *, recorder: Recorder | None = None
    ) -> None:
        self.store = store
        self.factory = factory
        self.recorder = recorder
        self.telemetry: Telemetry | None = None  # exports each recorded run when set
        self.ledger: ActorHandle | None = None

    async def start(
        self,
        plan: Plan,
        graph: nx.DiGraph,
        send: Send,
        *,
        run_id: str,
        retrier: NodeRetrier,
        security: Sequence[ActorHandle],
        revise: Revise | None = None,
        budget: Budget | None = None,
        planned: Sequence[Json] = (),
        replay: str | None = None,
    ) -> RunResult:
        """Store the new run (every node pending), then execute it checkpointed; ``planned``
        are the events of its planning (the planner's model calls), recorded with its plan;
        ``replay`` names the tape serving a replay's recorded answers."""
        now = time.time()
        info = RunInfo(
            run_id=run_id,
            goal=plan.goal,
            plan=plan,
            state=RunState.RUNNING,
            created_at=now,
            updated_at=now,
            factory=self.factory,
            nodes=fresh_nodes(plan, []),
        )
        await asyncio.to_thread(self.store.create_run, info)
        await self._ensure_ledger(security)
        return await self._execute(
            plan, graph, send, run_id, retrier, [], [], revise,
            fresh=True, budget=budget, planned=list(planned), replay=replay,
        )  # fmt: skip

    async def resume(
        self,
        run_id: str,
        catalog: Sequence[SkillInfo],
        send: Send,
        *,
        retrier: NodeRetrier,
        security: Sequence[ActorHandle],
        revise: Revise | None = None,
        budget: Budget | None = None,
    ) -> RunResult:
        """Run what a stored run has not done: every node that did not succeed (``budget``
        counts the kept nodes' usage too).

        Raises:
            UnknownRunError: the store has no such run.
            RunFinishedError: the run already succeeded.
            PlanValidationError: its plan no longer fits this mesh's skills (nothing runs).
        """
        info = await asyncio.to_thread(self.store.get_run, run_id)
        if info.state is RunState.SUCCEEDED:
            raise RunFinishedError(run_id)
        graph = validate_plan(info.plan, catalog)
        # the succeeded nodes are kept; the rest run again, with their approvals
        kept = [n.record() for n in info.nodes if n.status is NodeStatus.SUCCEEDED or n.approvals]
        await asyncio.to_thread(self.store.set_state, run_id, RunState.RUNNING)
        again = [n for n in fresh_nodes(info.plan, kept) if n.status is not NodeStatus.SUCCEEDED]
        await asyncio.to_thread(self.store.save_nodes, run_id, again)  # from pending again
        await self._ensure_ledger(security)
        return await self._execute(
            info.plan,
            graph,
            send,
            run_id,
            retrier,
            kept,
            info.revisions,
            revise,
            fresh=False,
            budget=budget,
        )

    async def answer(self, run_id: str, step_id: str, *, approve: bool, by: str) -> None:
        """Store a human's answer to what node ``step_id`` of a paused run asks.

        Raises:
            UnknownRunError: no such run.
            NoApprovalPendingError: that node waits for no answer.
        """
        info = await asyncio.to_thread(self.store.get_run, run_id)
        node = next((n for n in info.nodes if n.step_id == step_id), None)
        asked = [a for a in node.approvals if a.answer is None] if node is not None else []
        if node is None or node.status is not NodeStatus.WAITING or not asked:
            raise NoApprovalPendingError(run_id, step_id)
        now = time.time()
        for approval in asked:
            approval.answer, approval.answered_by, approval.answered_at = approve, by, now
        await asyncio.to_thread(self.store.save_nodes, run_id, [node])
        if self.recorder is not None:
            await asyncio.to_thread(record_answers, self.recorder, run_id, step_id, asked, by)

    async def _execute(
        self,
        plan: Plan,
        graph: nx.DiGraph,
        send: Send,
        run_id: str,
        retrier: NodeRetrier,
        kept: list[NodeRecord],
        revisions: list[PlanRevision],
        revise: Revise | None,
        *,
        fresh: bool,
        budget: Budget | None,
        planned: list[Json] | None = None,
        replay: str | None = None,
    ) -> RunResult:
        """Execute checkpointed (and recorded); when the run fails and ``revise`` gives a
        revised plan, store it next to the one it replaces and go on with it (up to
        ``revise.max_replans``)."""
        async with self._recording(run_id, plan.goal) as recording:
            if recording is not None and fresh:  # a resumed run's plan is recorded already
                recording.plan(plan, len(revisions))
                recording.call(None, planned or [])
            while True:
                try:
                    result = await execute(
                        plan,
                        graph,
                        node_send(
                            send,
                            run_id,
                            self.store,
                            fresh=fresh,
                            recording=recording,
                            replay=replay,
                        ),
                        run_id=run_id,
                        retrier=retrier,
                        checkpoint=RunCheckpointer(
                            self.store, run_id, plan, kept, recording=recording
                        ),
                        resumed=kept,
                        budget=budget,
                    )
                except RunFailedError as failed:
                    assert failed.result is not None
                    failed.result.revisions = list(revisions)
                    final = any(  # a human's no, a spent budget: not failures to plan around
                        n.error is not None and n.error.type in _NOT_REPLANNED
                        for n in failed.result.nodes
                    )
                    if revise is None or final or len(revisions) >= revise.max_replans:
                        raise
                    replanning = SINK.set([])  # the re-planner's model calls
                    try:
                        revised = await revise(failed.result)
                    except AgentMeshError as exc:
                        raise RunFailedError(
                            f"{failed}; re-planning failed: {exc}", result=failed.result
                        ) from exc
                    finally:
                        planned = SINK.get() or []
                        SINK.reset(replanning)
                    if revised is None:
                        raise
                    plan, graph = revised
                    kept = kept_after_revision(failed.result, plan, graph)
                    revision = PlanRevision(
                        plan=failed.result.plan, nodes=failed.result.nodes, revised_at=time.time()
                    )
                    revisions = [*revisions, revision]
                    fresh = False  # the revised plan's nodes may share ids with ones that ran
                    await asyncio.to_thread(
                        self.store.revise_plan, run_id, plan, revision, fresh_nodes(plan, kept)
                    )
                    if recording is not None:
                        recording.plan(plan, len(revisions))
                        recording.call(None, planned)
                    continue
                result.revisions = list(revisions)
                return result

    @contextlib.asynccontextmanager
    async def _recording(self, run_id: str, goal: str) -> AsyncIterator[RunRecording | None]:
        """The run's flight recording (None when the mesh records nothing): written out, and
        exported as telemetry if asked, when the run ends however it ends."""
        if self.recorder is None:
            yield None
            return
        recording = RunRecording(self.recorder, run_id)
        if self.telemetry is not None:
            recording.kept = []
        try:
            yield recording
        finally:
            await recording.close()
            if self.telemetry is not None and recording.kept:
                export_run(goal, recording.events(), self.telemetry)

    async def _ensure_ledger(self, security: Sequence[ActorHandle]) -> None:
        """Start the ledger actor on the driver's node (once) and give it to every security
        actor; it starts in the background, waited for only by a side-effecting call."""
        if self.ledger is not None:
            return
        node = ray.get_runtime_context().get_node_id()
        actor = ray.remote(num_cpus=0)(RunLedger).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        )
        try:
            self.ledger = cast(ActorHandle, actor.remote(self.store))
        except Exception as exc:  # a user's store that cannot be pickled, for one
            raise ConfigError(f"the run store cannot go to the ledger actor: {exc}") from None
        await asyncio.gather(
            *(await_ray(a.set_ledger.remote(self.ledger), what="security actor") for a in security)
        )

    def close(self) -> None:
        if self.ledger is not None:
            ray.kill(self.ledger)
            self.ledger = None

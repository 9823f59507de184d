"""Runs a validated plan: every ready node at once, upstream results passed downstream.

Each node's record keeps its agent, status, attempts (and every failed attempt's error), the
times the agent itself started and ended the skill (so parallel branches show as overlapping
intervals), its output or its error. A failed node does not stop independent branches; its
descendants are marked skipped and the whole record comes back on
:class:`~agentmesh.errors.RunFailedError`, so nothing is lost. A :class:`Checkpoint` hears of
every node transition, so a durable run's store always holds where the run is (see
:mod:`agentmesh.runs`); a resumed run starts from its succeeded nodes. A node that asks a
human for approval waits (see :mod:`agentmesh._private.run_approval`): the rest of the run goes
on, and it ends paused (:class:`~agentmesh.errors.RunPaused`) if nothing failed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import networkx as nx
from a2a.types import Task
from pydantic import JsonValue

from agentmesh._private import run_approval
from agentmesh._private.idempotency import RUN_NODE
from agentmesh._private.node_retry import NodeRetrier
from agentmesh._private.schedule import schedule
from agentmesh.errors import (
    BudgetExceededError,
    InputRequired,
    RunFailedError,
    RunPaused,
    UserError,
)
from agentmesh.models import Budget, Usage
from agentmesh.planner import Plan, PlanStep
from agentmesh.protocols import a2a
from agentmesh.provenance import Label, join_all, task_label
from agentmesh.results import (
    ErrorInfo,
    NodeApproval,
    NodeRecord,
    NodeStatus,
    PlanRevision,
    RunResult,
)
from agentmesh.retry import GiveUp, RetryPolicy

__all__ = [
    "Checkpoint",
    "ErrorInfo",
    "NodeApproval",
    "NodeRecord",
    "NodeStatus",
    "PlanRevision",
    "RunResult",
    "execute",
]

Send = Callable[..., Awaitable[tuple[JsonValue, Task]]]


class Checkpoint(Protocol):
    """Told of each node transition (running, succeeded, failed, skipped) and of the end.

    An error it raises ends ``execute`` with that error (a durable run that cannot be recorded
    should not go on); nodes already running are not waited for.
    """

    async def node(self, record: NodeRecord) -> None: ...

    async def finish(self, result: RunResult) -> None: ...


async def _no_checkpoint(record: NodeRecord) -> None:
    return None


def _resolve(ref: str, outputs: dict[str, JsonValue]) -> JsonValue:
    source, _, path = ref.partition(".")
    value: Any = outputs[source]
    for key in filter(None, path.split(".")):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise UserError(f"input {ref!r}: the result of {source!r} has no {key!r}")
    return value


async def execute(
    plan: Plan,
    graph: nx.DiGraph,
    send: Send,
    *,
    run_id: str | None = None,
    checkpoint: Checkpoint | None = None,
    resumed: Sequence[NodeRecord] = (),
    retrier: NodeRetrier | None = None,
    budget: Budget | None = None,
) -> RunResult:
    """Run ``plan`` (already validated into ``graph``) with ``send(agent, skill, args, ...)``.

    ``retrier`` makes each node's attempts (default: one attempt, no retries): its retry
    policy's backoff, time limits and run budget, the breakers that fail an agent that keeps
    failing fast, the cancel of a timed-out task and the recovery of a dead agent (see
    :mod:`agentmesh._private.node_retry`). A user error or a security denial is never
    retried: it would fail again.
    ``checkpoint`` hears of every node transition and of the end; ``resumed`` are records of
    an earlier run of this plan: the succeeded ones are kept as they are (outputs and labels
    flow downstream) and not run again; any other runs again with its approvals (answered or
    not: see :func:`~agentmesh._private.run_approval.gate`). Once the nodes' model usage is
    past ``budget``, no node starts: each left fails with BudgetExceededError, and so does the
    run. Raises RunFailedError if a node failed, else RunPaused if a node waits for a human.
    """
    run_id = run_id or uuid.uuid4().hex
    retrier = retrier or NodeRetrier(RetryPolicy.from_max_retries(0))
    records = {s.id: NodeRecord(step_id=s.id, agent=s.agent, skill=s.skill) for s in plan.steps}
    outputs: dict[str, JsonValue] = {}
    labels: dict[str, Label] = {}
    for kept in resumed:
        if kept.status is not NodeStatus.SUCCEEDED:
            records[kept.step_id].approvals = list(kept.approvals)
            continue
        records[kept.step_id] = kept
        outputs[kept.step_id] = kept.output
        labels[kept.step_id] = kept.label or Label.unknown(f"agent:{kept.agent}")
    save = checkpoint.node if checkpoint is not None else _no_checkpoint
    started = time.time()
    spent = Usage.total_of([r.usage for r in records.values() if r.usage is not None])

    async def run_node(step: PlanStep) -> None:
        record = records[step.id]
        record.status = NodeStatus.RUNNING
        approved = run_approval.gate(step, record)
        if approved is None:  # waits for an answer, or was denied
            return

        async def attempt(task_id: str) -> tuple[JsonValue, Task]:
            record.attempts += 1
            record.started_at = time.time()
            args = dict(step.args)
            args.update({p: _resolve(ref, outputs) for p, ref in step.inputs.items()})
            # upstream results keep their labels: the node's input is as trusted as they are
            label = join_all([labels[s] for s in sorted(step.upstream())])
            label = Label.user().join(label) if label is not None else None
            return await send(
                step.agent,
                step.skill,
                args,
                context_id=run_id,
                label=label,
                grant=step.tools,
                new_task_id=task_id,
                approvals=approved,
            )

        def failed(exc: BaseException, retry_in_s: float | None, gave_up: GiveUp | None) -> None:
            record.ended_at = time.time()
            error = ErrorInfo(type=type(exc).__name__, message=str(exc))
            record.error = error
            record.errors.append(
                error.model_copy(update={"attempt": record.attempts, "retry_in_s": retry_in_s})
            )
            record.gave_up = gave_up

        try:
            output, task = await retrier.run(step, attempt, failed)
        except InputRequired as asked:
            run_approval.ask(record, asked)  # waits if it asks for an approval, else fails
            return
        except Exception:  # recorded on the node by `failed`, never lost with the task
            record.status = NodeStatus.FAILED
            return
        agent_start, agent_end = a2a.task_timing(task)
        record.started_at = agent_start or record.started_at
        record.ended_at = agent_end or time.time()
        record.task_id = task.id
        record.output = output
        record.error = None
        record.label = task_label(task) or Label.unknown(f"agent:{step.agent}")
        if (used := a2a.task_usage(task)) is not None:
            record.usage = Usage.model_validate(used)
            spent.merge(record.usage)
        record.status = NodeStatus.SUCCEEDED
        outputs[step.id] = output
        labels[step.id] = record.label

    async def run_saved(step: PlanStep) -> None:
        """run_node between two checkpoints, with its node in context for the send."""
        RUN_NODE.set(step.id)
        record = records[step.id]
        if budget is not None and (why := budget.exceeded(spent)) is not None:
            record.status, record.ended_at = NodeStatus.FAILED, time.time()
            record.error = ErrorInfo(type=BudgetExceededError.__name__, message=why)
            record.errors.append(record.error)
            await save(record)
            return
        record.status = NodeStatus.RUNNING
        await save(record)
        await run_node(step)
        await save(record)

    await schedule(graph, records, run_saved, save)

    sinks = [n for n in nx.topological_sort(graph) if graph.out_degree(n) == 0]
    output_step = plan.output or sinks[-1]
    result = RunResult(
        run_id=run_id,
        goal=plan.goal,
        plan=plan,
        succeeded=all(r.status is NodeStatus.SUCCEEDED for r in records.values()),
        output=outputs.get(output_step),
        nodes=[records[s.id] for s in plan.steps],
        started_at=started,
        ended_at=time.time(),
    )
    if checkpoint is not None:
        await checkpoint.finish(result)
    if result.paused:
        raise RunPaused(run_approval.paused_message(result), result=result)
    if not result.succeeded:
        failed = "; ".join(
            f"{r.step_id} ({r.error.type}: {r.error.message})"
            for r in result.nodes
            if r.status is NodeStatus.FAILED and r.error is not None
        )
        over = any(r.error and r.error.type == BudgetExceededError.__name__ for r in result.nodes)
        error = BudgetExceededError if over else RunFailedError
        raise error(f"run {run_id} failed: {failed}", result=result)
    return result

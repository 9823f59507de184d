"""Runs a validated plan: every ready node at once, upstream results passed downstream.

Each node's record keeps its agent, status, attempts (and every failed attempt's error), the
times the agent itself started and ended the skill (so parallel branches show as overlapping
intervals), its output or its error. A failed node does not stop independent branches; its
descendants are marked skipped and the whole record comes back on
:class:`~agentmesh.errors.RunFailedError`, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import networkx as nx
from a2a.types import Task
from pydantic import BaseModel, Field, JsonValue

from agentmesh._private.node_retry import Cancel, NodeRetrier, Recover
from agentmesh.breaker import Breakers
from agentmesh.errors import RunFailedError, UserError
from agentmesh.planner import Plan, PlanStep
from agentmesh.protocols import a2a
from agentmesh.provenance import Label, join_all, task_label
from agentmesh.retry import GiveUp, RetryPolicy

__all__ = ["ErrorInfo", "NodeRecord", "NodeStatus", "RunResult", "execute"]

Send = Callable[..., Awaitable[tuple[JsonValue, Task]]]


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class ErrorInfo(BaseModel):
    type: str
    message: str
    attempt: int | None = None
    """In ``NodeRecord.errors``: the attempt that failed (0: refused before any call)."""
    retry_in_s: float | None = None
    """In ``NodeRecord.errors``: the backoff before the next attempt (None: none followed)."""


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

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


class RunResult(BaseModel):
    """A finished run: the plan, every node's record, and the output step's result."""

    run_id: str
    goal: str
    plan: Plan
    succeeded: bool
    output: JsonValue = None
    nodes: list[NodeRecord]
    started_at: float
    ended_at: float

    def node(self, step_id: str) -> NodeRecord:
        return next(n for n in self.nodes if n.step_id == step_id)


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
    max_retries: int = 0,
    retry: RetryPolicy | None = None,
    breakers: Breakers | None = None,
    rng: random.Random | None = None,
    cancel: Cancel | None = None,
    recover: Recover | None = None,
) -> RunResult:
    """Run ``plan`` (already validated into ``graph``) with ``send(agent, skill, args, ...)``.

    ``retry`` (default: ``max_retries`` retries of every run failure) sets the nodes' attempts,
    backoff (jittered with ``rng``), time limits and the run's retry budget; ``breakers`` fail
    nodes of an agent that keeps failing fast; ``cancel(agent, task_id)`` stops a timed-out
    node's task and ``recover(agent)`` brings a dead agent back before its node is retried.
    A user error or a security denial is never retried: it would fail again.
    """
    run_id = run_id or uuid.uuid4().hex
    retrier = NodeRetrier(
        retry or RetryPolicy.from_max_retries(max_retries),
        breakers=breakers,
        rng=rng,
        cancel=cancel,
        recover=recover,
    )
    records = {s.id: NodeRecord(step_id=s.id, agent=s.agent, skill=s.skill) for s in plan.steps}
    outputs: dict[str, JsonValue] = {}
    labels: dict[str, Label] = {}
    started = time.time()

    async def run_node(step: PlanStep) -> None:
        record = records[step.id]
        record.status = NodeStatus.RUNNING

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
        record.status = NodeStatus.SUCCEEDED
        outputs[step.id] = output
        labels[step.id] = record.label

    pending: dict[asyncio.Task[None], str] = {}
    done: set[str] = set()
    while True:
        for node in nx.topological_sort(graph):
            record = records[node]
            if record.status is not NodeStatus.PENDING or node in pending.values():
                continue
            preds = list(graph.predecessors(node))
            if any(records[p].status in (NodeStatus.FAILED, NodeStatus.SKIPPED) for p in preds):
                record.status = NodeStatus.SKIPPED
                record.error = ErrorInfo(type="Skipped", message="an upstream step failed")
            elif all(p in done for p in preds):
                step = graph.nodes[node]["step"]
                pending[asyncio.create_task(run_node(step))] = node
        if not pending:
            break
        finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for fut in finished:
            node = pending.pop(fut)
            fut.result()  # run_node records errors itself; this surfaces only bugs
            if records[node].status is NodeStatus.SUCCEEDED:
                done.add(node)

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
    if not result.succeeded:
        failed = "; ".join(
            f"{r.step_id} ({r.error.type}: {r.error.message})"
            for r in result.nodes
            if r.status is NodeStatus.FAILED and r.error is not None
        )
        raise RunFailedError(f"run {run_id} failed: {failed}", result=result)
    return result

"""What a durable run does per node, besides the executor: each skill call stamped with its
run node (idempotency keys, the ledger's keys, the flight recorder's sink), and which nodes a
revised plan keeps or starts afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import networkx as nx
from a2a.types import Task
from pydantic import JsonValue

from agentmesh._private.idempotency import RUN_NODE, IdempotencyScope
from agentmesh._private.record_sink import SINK
from agentmesh._private.run_recording import RunRecording
from agentmesh.executor import NodeRecord, NodeStatus, RunResult, Send
from agentmesh.planner import Plan
from agentmesh.runs import NodeCheckpoint, RunStore

__all__ = ["Revise", "fresh_nodes", "kept_after_revision", "node_send"]


def node_send(
    send: Send,
    run_id: str,
    store: RunStore,
    *,
    fresh: bool,
    recording: RunRecording | None = None,
    replay: str | None = None,
) -> Send:
    """``send`` stamping each skill call with the run node it is made for (set by the
    executor around each node), so the node's tool calls get idempotency keys, and with the
    keys the ledger already holds for that node. Those are read once per attempt, except for
    the first attempt of a node of a ``fresh`` run (one just created: its ledger is empty).
    With a ``recording``, what each call gathered (``record_sink``) is recorded for its node;
    in a replay, the calls carry the name of the ``replay`` tape that serves recorded answers."""
    tried: set[str] = set()

    async def stamped(
        agent: str, skill: str, args: dict[str, JsonValue], **kwargs: Any
    ) -> tuple[JsonValue, Task]:
        node = RUN_NODE.get(None)
        scope = None
        if node is not None:
            recorded: list[str] = []
            if not fresh or node in tried:
                recorded = await asyncio.to_thread(store.effect_keys, run_id, node)
            tried.add(node)
            scope = IdempotencyScope(run_id, node, recorded=frozenset(recorded), replay=replay)
        if recording is None:
            return await send(agent, skill, args, idempotency=scope, **kwargs)
        sink = SINK.set([])
        try:
            return await send(agent, skill, args, idempotency=scope, **kwargs)
        finally:
            recording.call(node, SINK.get() or [])
            SINK.reset(sink)

    return stamped


class Revise(Protocol):
    """The mesh's re-planning for one run: the revised plan of a failed run, validated into
    its DAG, or None (the planner has none); at most ``max_replans`` times a run."""

    max_replans: int

    async def __call__(self, failed: RunResult) -> tuple[Plan, nx.DiGraph] | None: ...


def kept_after_revision(failed: RunResult, plan: Plan, graph: nx.DiGraph) -> list[NodeRecord]:
    """The succeeded nodes of ``failed`` that ``plan`` repeats exactly (same step), with every
    step upstream of them kept too: their outputs stand, and they are not run again."""
    old = {s.id: s for s in failed.plan.steps}
    records = {n.step_id: n for n in failed.nodes}
    kept: dict[str, NodeRecord] = {}
    for step_id in nx.topological_sort(graph):
        step = graph.nodes[step_id]["step"]
        record = records.get(step_id)
        if (
            old.get(step_id) == step
            and record is not None
            and record.status is NodeStatus.SUCCEEDED
            and all(u in kept for u in step.upstream())
        ):
            kept[step_id] = record
    return list(kept.values())


def fresh_nodes(plan: Plan, kept: Sequence[NodeRecord]) -> list[NodeCheckpoint]:
    """The stored nodes of a plan about to run: the succeeded ones as they are, the rest
    pending (with the approvals they asked for, answered or not)."""
    records = {r.step_id: r for r in kept}
    nodes = []
    for step in plan.steps:
        node = NodeCheckpoint(step_id=step.id, agent=step.agent, skill=step.skill)
        record = records.get(step.id)
        if record is not None and record.status is NodeStatus.SUCCEEDED:
            node = NodeCheckpoint.model_validate(record.model_dump())
        elif record is not None:
            node.approvals = list(record.approvals)
        nodes.append(node)
    return nodes

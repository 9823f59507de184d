"""The executor's scheduler: start each node of the DAG once all its predecessors succeeded.

Kept apart from :mod:`agentmesh.executor` (which runs one node) so the order rules read in one
place: a failed node's descendants are skipped, a node that waits for a human holds its
descendants pending (the run pauses once nothing else can run), and nodes that come in already
succeeded (kept from an earlier run) count as finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import networkx as nx

from agentmesh.planner import PlanStep
from agentmesh.results import ErrorInfo, NodeRecord, NodeStatus

__all__ = ["schedule"]


async def schedule(
    graph: nx.DiGraph,
    records: dict[str, NodeRecord],
    run_node: Callable[[PlanStep], Coroutine[Any, Any, None]],
    save: Callable[[NodeRecord], Awaitable[None]],
) -> None:
    """Run every node once all its predecessors succeeded; skip the descendants of a failure;
    leave those of a node that waits for a human pending.

    Nodes that come in already succeeded (kept from an earlier run of the plan) count as
    finished and are not run again; every skip is saved (``save``) like any other transition.

    Event-driven (a count of unfinished predecessors per node, a queue of finished nodes), so
    a DAG of n nodes costs O(n + edges) to schedule, not a scan of the graph per finished node.
    """
    waiting = {n: graph.in_degree(n) for n in graph}
    finished: asyncio.Queue[str] = asyncio.Queue()
    running: dict[str, asyncio.Task[None]] = {}

    def start(node: str) -> None:
        task = asyncio.create_task(run_node(graph.nodes[node]["step"]))
        task.add_done_callback(lambda _: finished.put_nowait(node))
        running[node] = task

    order = list(nx.topological_sort(graph))  # plan order among the first ready nodes
    for node in order:
        if records[node].status is NodeStatus.SUCCEEDED:
            for succ in graph.successors(node):
                waiting[succ] -= 1
    for node in order:
        if waiting[node] == 0 and records[node].status is NodeStatus.PENDING:
            start(node)
    while running:
        node = await finished.get()
        running.pop(node).result()  # run_node records errors itself; this surfaces only bugs
        if records[node].status is NodeStatus.SUCCEEDED:
            for succ in graph.successors(node):
                waiting[succ] -= 1
                if waiting[succ] == 0:
                    start(succ)
            continue
        if records[node].status is NodeStatus.WAITING:  # its descendants wait with it
            continue
        for later in nx.descendants(graph, node):
            if records[later].status is NodeStatus.PENDING:
                records[later].status = NodeStatus.SKIPPED
                records[later].error = ErrorInfo(type="Skipped", message="an upstream step failed")
                await save(records[later])

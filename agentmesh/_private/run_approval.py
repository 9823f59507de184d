"""Approval points of a run: a node that waits for a human, and what it does once answered.

A plan step may ask first (``PlanStep(approval="Deploy to production?")``), and a tool call
the policy wants approved (``untrusted_arguments: approve``, an exfiltration kind set to
``approve``) ends the node's task ``input-required`` with that exact call's key. Either way
the node's record gets a :class:`~agentmesh.results.NodeApproval` and the status ``waiting``;
the run pauses once nothing else can run, and the run store keeps it. An answer (see
``Mesh.approve_run``) is stored on the node, and the run resumes: a yes runs the node again
(from the start, with the approved call stamped on its skill call, good for one use; effects it
made before are not repeated: see :mod:`agentmesh._private.idempotency`), a no fails it with
``ApprovalDenied``.
"""

from __future__ import annotations

from agentmesh.errors import InputRequired
from agentmesh.planner import PlanStep
from agentmesh.results import ErrorInfo, NodeApproval, NodeRecord, NodeStatus, RunResult

__all__ = ["ask", "gate", "paused_message"]


def gate(step: PlanStep, record: NodeRecord) -> list[str] | None:
    """Before a node runs: the approved tool-call keys to send with it, or None when it may
    not run now (it waits for an answer, or an answer was no; its record says which)."""
    if any(a.answer is None for a in record.approvals):
        record.status = NodeStatus.WAITING
        return None
    denied = next((a for a in record.approvals if a.answer is False), None)
    if denied is not None:
        record.status = NodeStatus.FAILED
        record.error = ErrorInfo(
            type="ApprovalDenied",
            message=f"{denied.answered_by or 'the user'} did not approve: {denied.question}",
        )
        return None
    if step.approval is not None and not any(a.key is None for a in record.approvals):
        record.approvals.append(NodeApproval(question=step.approval))
        record.status = NodeStatus.WAITING
        return None
    return [a.key for a in record.approvals if a.key is not None]


def ask(record: NodeRecord, asked: InputRequired) -> None:
    """The node's task ended input-required: a tool-call approval makes the node wait; any
    other question (a skill asking for input) fails it, as a run has no one to answer it."""
    if asked.approval is None:
        record.status = NodeStatus.FAILED
        return
    record.errors.pop()  # reported as a failed attempt by the retrier: it is a question
    record.error = None
    record.gave_up = None
    record.approvals.append(
        NodeApproval(question=asked.prompt, tool=asked.tool, key=asked.approval)
    )
    record.status = NodeStatus.WAITING


def paused_message(result: RunResult) -> str:
    waiting = [
        f"{n.step_id}: {a.question}"
        for n in result.nodes
        if n.status is NodeStatus.WAITING
        for a in n.approvals
        if a.answer is None
    ]
    return f"run {result.run_id} waits for approval ({'; '.join(waiting)})"

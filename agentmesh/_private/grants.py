"""The plan-grant and provenance checks of a tool call (called from ``vet_tool_call``).

Order, after the policy's own grant: the node's plan grant (``plan.grant``: is the tool granted
at all; ``plan.arguments``: do the fixed arguments hold), then provenance
(``provenance.untrusted_arguments``): a side-effecting call made while the task's label is
untrusted must have every sensitive argument pinned by the grant, unless the tool's label lets
it through or asks a human (``provenance.approval_required``, then ``provenance.approved`` for
that one exact call). Pure functions of the policy and the input, like the rest of the judge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from agentmesh._private.judge import Judgement
from agentmesh.grants import UNKNOWN_TOOL, Effect, ToolGrant, ToolLabel, UntrustedArguments
from agentmesh.provenance import Label

if TYPE_CHECKING:
    from agentmesh._private.policy_schema import Policy

__all__ = ["APPROVAL_RULE", "approval_key", "call_key", "canonical", "gate_call", "tool_label"]

APPROVAL_RULE = "provenance.approval_required"
_ALLOW, _BLOCK = "allow", "block"


def tool_label(policy: Policy, tool: str) -> ToolLabel:
    """The policy's label of ``tool``: its exact entry, else the first glob that matches, else
    the label of an unknown tool (side-effecting, every argument sensitive)."""
    labels = policy.tool_labels
    if tool in labels:
        return labels[tool]
    return next((lab for glob, lab in labels.items() if fnmatchcase(tool, glob)), UNKNOWN_TOOL)


def call_key(tool: str, payload: str) -> str:
    """One exact call (the tool and its canonical JSON arguments), as a human approves it."""
    return approval_key(tool, hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest())


def approval_key(tool: str, sha256: str) -> str:
    """:func:`call_key` from the digest a decision records (``Decision.content_sha256``)."""
    return f"{tool}:{sha256}"


def canonical(args: object) -> str:
    """The canonical JSON of a call's arguments (what the gateway vets and keys approvals by)."""
    return json.dumps(args, sort_keys=True)


def _describe(grant: Sequence[ToolGrant]) -> str:
    text = ", ".join(g.describe() for g in grant) or "no tools"
    return text if len(text) <= 300 else text[:297] + "..."


def gate_call(
    policy: Policy,
    gate: Judgement,
    tool: str,
    payload: str,
    *,
    grant: Sequence[ToolGrant] | None,
    label: Label | None,
    approvals: Collection[str] = (),
) -> Judgement:
    """Narrow the policy's verdict ``gate`` by the node's grant and the task's label."""
    untrusted = label is not None and not label.trusted
    if gate.verdict != _ALLOW or (grant is None and not untrusted):
        return gate
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    args = parsed if isinstance(parsed, dict) else {}
    matched: ToolGrant | None = None
    if grant is not None:
        covering = [g for g in grant if g.covers(tool)]
        if not covering:
            reason = f"the plan grants this node no tool {tool!r} (its grant: {_describe(grant)})"
            return Judgement(_BLOCK, "plan.grant", reason)
        matched = next((g for g in covering if not g.refused_arguments(args)), None)
        if matched is None:
            wrong = covering[0].refused_arguments(args)
            reason = (
                f"arguments {wrong} of {tool!r} are outside the node's grant "
                f"{covering[0].describe()}"
            )
            return Judgement(_BLOCK, "plan.arguments", reason)
        gate = gate._replace(reason=f"{gate.reason}; the plan grants {matched.describe()}")
    if not untrusted:
        return gate
    assert label is not None
    entry = tool_label(policy, tool)
    if entry.effect is Effect.READ_ONLY:
        return gate._replace(reason=f"{gate.reason}; read-only, so untrusted data may steer it")
    sensitive = entry.sensitive if entry.sensitive is not None else list(args)
    pinned = set(matched.args) if matched is not None else set()
    loose = sorted({name for name in sensitive if name in args and name not in pinned})
    if not loose:
        return gate._replace(reason=f"{gate.reason}; its sensitive arguments are pinned")
    sources = ", ".join(label.sources)
    where = (
        f"{tool!r} has side effects and its arguments {loose} are not fixed by the plan while "
        f"the task holds untrusted data (from {sources})"
    )
    if entry.untrusted_arguments is UntrustedArguments.ALLOW:
        return gate._replace(reason=f"{gate.reason}; {where}: let through by its tool label")
    if entry.untrusted_arguments is UntrustedArguments.APPROVE:
        if call_key(tool, payload) in approvals:
            return Judgement(_ALLOW, "provenance.approved", f"{where}; a human approved it")
        return Judgement(_BLOCK, APPROVAL_RULE, f"{where}: it needs a human's approval")
    return Judgement(_BLOCK, "provenance.untrusted_arguments", where)

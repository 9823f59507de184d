"""What the security monitor records for each verdict, and the error a refusal raises.

Apart from :mod:`agentmesh.security` because the records travel further than the monitor: the
mesh, the audit log, the CLI and A2A error replies read decisions without deciding anything.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmesh._private import grants
from agentmesh._private.policy_schema import Verdict
from agentmesh._private.scanner import Finding
from agentmesh.errors import (
    ApprovalRequired,
    BudgetExhausted,
    CircuitOpen,
    ContentQuarantined,
    MessageBlocked,
    RateLimited,
    ToolCallBlocked,
)

__all__ = ["Decision", "Kind", "QuarantineItem", "awaits_approval", "raise_for_decision"]

Kind = Literal["message", "reply", "tool_call", "tool_result"]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )


class Decision(_Strict):
    """One recorded verdict; ``reason`` is always set, ``rule`` names what decided."""

    seq: int = Field(ge=1)
    at: float
    kind: Kind
    principal: str
    target: str
    verdict: Verdict
    reason: str
    rule: str
    findings: list[Finding] = []
    content_sha256: str
    quarantine_id: str | None = None


class QuarantineItem(_Strict):
    """Held content, kept whole for review."""

    id: str
    decision_seq: int
    content: str
    at: float


def awaits_approval(rule: str) -> bool:
    """``provenance.approval_required`` or ``exfil.<kind>.approval_required``."""
    return rule.endswith(".approval_required")


_WHAT: dict[str, str] = {
    "message": "message from {p!r} to {t!r}",
    "reply": "reply from {p!r} for {t!r}",
    "tool_call": "call of tool {t!r} by {p!r}",
    "tool_result": "result of tool {t!r} for {p!r}",
}


def raise_for_decision(decision: Decision) -> None:
    """Return on allow; raise the matching SecurityDenied (carrying ``decision``) otherwise."""
    if decision.verdict is Verdict.ALLOW:
        return
    what = _WHAT[decision.kind].format(p=decision.principal, t=decision.target)
    if decision.verdict is Verdict.QUARANTINE:
        raise ContentQuarantined(
            f"{what} quarantined as {decision.quarantine_id} ({decision.rule}): {decision.reason}",
            decision=decision,
        )
    text = f"{what} blocked ({decision.rule}): {decision.reason}"
    if awaits_approval(decision.rule):
        key = grants.approval_key(decision.target, decision.content_sha256)
        raise ApprovalRequired(text, decision=decision, tool=decision.target, key=key)
    if decision.rule == "limits.breaker":
        raise CircuitOpen(text, decision=decision)
    if decision.rule.startswith("limits."):
        limited = BudgetExhausted if decision.rule.endswith(".budget") else RateLimited
        raise limited(text, decision=decision)
    if decision.kind in ("message", "reply"):
        raise MessageBlocked(text, decision=decision)
    raise ToolCallBlocked(text, decision=decision)

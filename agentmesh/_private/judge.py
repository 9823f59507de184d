"""The pure half of the security monitor: from policy and input to a verdict, no state.

Kept apart from the monitor's log and quarantine so that any number of monitors (a pool) reach
the same verdict for the same input. Content goes to the layered detector (``detector.py``:
normalisation, rules, and the learned classifier where the policy turns it on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from agentmesh._private.detector import Provenance, detect
from agentmesh._private.scanner import Finding

if TYPE_CHECKING:
    from agentmesh._private.policy_schema import Policy

__all__ = ["Judgement", "gate_message", "gate_tool", "screen"]

_ALLOW = "allow"


class Judgement(NamedTuple):
    """A verdict ("allow", "block", "quarantine") with the deciding rule, why, and evidence."""

    verdict: str
    rule: str
    reason: str
    findings: tuple[Finding, ...] = ()


def gate_message(policy: Policy, sender: str, recipient: str, skill: str) -> Judgement:
    """The message rules' verdict: the first rule that matches, else the policy default."""
    target = f"{recipient}.{skill}"
    index = policy.message_rule(sender, recipient, skill)
    if index is None:
        reason = f"no message rule lets {sender!r} call {target!r}; the policy default is "
        return Judgement(policy.default, "default", reason + policy.default)
    rule = policy.messages[index]
    reason = f"messages[{index}] (from {rule.from_} to {rule.to}) allows it"
    return Judgement(_ALLOW, f"messages[{index}]", reason)


def gate_tool(policy: Policy, agent: str, tool: str) -> Judgement:
    """The tool grants' verdict: a grant that matches, else the policy default."""
    grant = policy.tool_grant(agent, tool)
    if grant is None:
        reason = f"no tool grant gives {agent!r} the tool {tool!r}; the policy default is "
        return Judgement(policy.default, "default", reason + policy.default)
    return Judgement(_ALLOW, grant, f"granted by {grant}")


_PROVENANCE: dict[str, Provenance] = {
    "on_message": "message",
    "on_reply": "reply",
    "on_tool_result": "tool_result",
    "on_tool_arguments": "tool_call",
}


def screen(gate: Judgement, content: str, policy: Policy, setting: str) -> Judgement:
    """Run the detector on ``content`` if the gate allows it; apply ``scanning.<setting>``."""
    if not isinstance(content, str):
        raise TypeError(f"content must be str, not {type(content).__name__}")
    scanning = policy.scanning
    if gate.verdict != _ALLOW:
        return gate  # a forbidden pair is refused whatever the content
    if not scanning.enabled:
        return gate._replace(reason=f"{gate.reason}; content scanning is off")
    found = detect(content, provenance=_PROVENANCE.get(setting, "unknown"), scanning=scanning)
    findings = tuple(found.findings)
    # The detector's reasons name rules, layers and scores only: the reason travels in error
    # messages, so it must not quote the hostile text it refused (the excerpts stay in
    # ``findings`` for reviewers).
    evidence = "; ".join(found.reasons)
    action: str = getattr(scanning, setting)
    if not found.flagged:
        return gate._replace(reason=f"{gate.reason}; {evidence}", findings=findings)
    flagged = f"flagged (score {found.score:.2f}): {evidence}"
    if action == _ALLOW:
        reason = f"{gate.reason}; {flagged} (let through: scanning.{setting} is allow)"
        return gate._replace(reason=reason, findings=findings)
    return Judgement(action, f"scanning.{setting}", flagged, findings)

"""The pure half of the security monitor: from policy and input to a verdict, no state.

Kept apart from the monitor's log and quarantine so that any number of monitors (a pool) reach
the same verdict for the same input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from agentmesh._private.scanner import Finding, scan_text, score

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


def screen(gate: Judgement, content: str, policy: Policy, setting: str) -> Judgement:
    """Scan ``content`` if the gate allows it; apply ``scanning.<setting>`` at the threshold."""
    if not isinstance(content, str):
        raise TypeError(f"content must be str, not {type(content).__name__}")
    scanning = policy.scanning
    if gate.verdict != _ALLOW:
        return gate  # a forbidden pair is refused whatever the content
    if not scanning.enabled:
        return gate._replace(reason=f"{gate.reason}; content scanning is off")
    off = set(scanning.disabled_rules)
    findings = tuple(
        f
        for f in scan_text(content)
        if f.rule.removeprefix("base64:") not in off and f.category not in off
    )
    value, threshold = score(findings), scanning.threshold
    action: str = getattr(scanning, setting)
    if value < threshold:
        reason = f"{gate.reason}; scanner score {value:.2f} < threshold {threshold:.2f}"
        return gate._replace(reason=reason, findings=findings)
    # Rule names only: the reason travels in error messages, so it must not quote the hostile
    # text it refused (the excerpts stay in ``findings`` for reviewers).
    evidence = ", ".join(f"{f.rule} ({f.score:.2f})" for f in findings[:3])
    flagged = f"scanner score {value:.2f} >= threshold {threshold:.2f}: {evidence}"
    if action == _ALLOW:
        reason = f"{gate.reason}; {flagged} (let through: scanning.{setting} is allow)"
        return gate._replace(reason=reason, findings=findings)
    return Judgement(action, f"scanning.{setting}", flagged, findings)

"""The security actor's decision logic: a policy kept as data, a verdict on every path.

Every message between agents, every reply, every tool call and every tool result passes a
:class:`SecurityMonitor`. It is a plain class (the mesh wraps it in a Ray actor) so it can be
tested, pickled and pooled: a verdict is a pure function of the policy and the input; only the
decision log, the quarantine store and the policy's limits (rate limits, budgets, circuit
breakers: ``_private/limits.py``) are state.

The policy's schema is in ``_private/policy_schema.py`` and the decision records (with
:func:`raise_for_decision`) in ``_private/decisions.py``; ``agentmesh.security`` re-exports
them as their public home.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from agentmesh._private import exfiltration, grants
from agentmesh._private.decisions import (
    Decision,
    Kind,
    QuarantineItem,
    awaits_approval,
    raise_for_decision,
)
from agentmesh._private.exfil_policy import ExfiltrationPolicy
from agentmesh._private.judge import Judgement, gate_message, gate_tool, screen
from agentmesh._private.limits import BreakerStatus, Limiter
from agentmesh._private.limits_policy import LimitsPolicy
from agentmesh._private.policy_schema import (
    MessageRule,
    Policy,
    SandboxGrant,
    ScanPolicy,
    Verdict,
    available_policies,
    load_policy,
)
from agentmesh._private.redact import redact
from agentmesh._private.scanner import Finding
from agentmesh.grants import ToolGrant
from agentmesh.provenance import Label

if TYPE_CHECKING:
    from agentmesh.audit import AuditLog

__all__ = [
    "BreakerStatus",
    "Decision",
    "ExfiltrationPolicy",
    "Finding",
    "LimitsPolicy",
    "MessageRule",
    "Policy",
    "QuarantineItem",
    "SandboxGrant",
    "ScanPolicy",
    "SecurityMonitor",
    "Verdict",
    "available_policies",
    "load_policy",
    "raise_for_decision",
]


class SecurityMonitor:
    """Decides on every message, reply, tool call and tool result, and records each decision.

    Verdicts depend only on the policy and the input, so monitors sharing a policy agree and can
    form a pool; the log (the last ``max_decisions``) and the quarantine are per instance, and
    quarantine ids are globally unique. The policy's ``limits`` keep per-principal state too
    (``clock``: monotonic seconds, injectable for tests); a pool keeps them by routing each
    agent to one monitor. Thread-safe; pickles without its locks.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        max_decisions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        audit: AuditLog | None = None,
    ) -> None:
        if max_decisions < 1:
            raise ValueError("max_decisions must be at least 1")
        self._policy = policy
        self._limits = Limiter(policy.limits, clock=clock)
        self._log: deque[Decision] = deque(maxlen=max_decisions)
        self._quarantine: dict[str, QuarantineItem] = {}
        self._seq = 0
        self._lock = threading.Lock()
        # the exfiltration checks' state: what each run read (bounded), the remote agents
        self._outbound = exfiltration.OutboundGuard(policy)
        # every decision also goes to this tamper-evident log (redacted), in seq order
        self._audit = audit

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        """The policy this monitor enforces."""
        return self._policy

    def set_remote_agents(self, names: Collection[str]) -> None:
        """The mesh members that are remote A2A agents: a message to one leaves the mesh."""
        self._outbound.remote = frozenset(names)

    def vet_message(
        self,
        sender: str,
        recipient: str,
        skill: str,
        content: str,
        *,
        label: Label | None = None,
        context: str | None = None,
    ) -> Decision:
        """A skill call: the message rules first (whatever the content), then what would leave
        (``label``: the parts' provenance; ``context``: the run), the limits, the scanner."""
        target = f"{recipient}.{skill}"
        gate = gate_message(self._policy, sender, recipient, skill)
        gate = self._outbound.text(
            gate, sender, recipient, target, content, label=label, context=context
        )
        gate = self._limits.admit(gate, sender, target=target, tool=False)
        judgement = screen(gate, content, self._policy, "on_message")
        decision = self._record("message", sender, target, content, judgement)
        self._outbound.heard(decision, content, context)
        return decision

    def vet_reply(
        self,
        replier: str,
        recipient: str,
        skill: str,
        content: str,
        *,
        context: str | None = None,
    ) -> Decision:
        """A skill's reply going back to its caller: what would leave, then the scanner. A
        refused leak counts against the replier's circuit breaker."""
        target = f"{replier}.{skill}"
        gate = Judgement(Verdict.ALLOW, "scanning.on_reply", f"reply to {recipient!r}")
        gate = self._outbound.text(
            gate, replier, recipient, target, content, label=None, context=context
        )
        if gate.rule.startswith("exfil."):  # a leak refused counts against the replier
            gate = self._limits.admit(gate, replier, target=target, tool=False)
        judgement = screen(gate, content, self._policy, "on_reply")
        decision = self._record("reply", replier, target, content, judgement)
        self._outbound.heard(decision, content, context)
        return decision

    def vet_tool_call(
        self,
        agent: str,
        tool: str,
        arguments: str,
        *,
        grant: Sequence[ToolGrant] | None = None,
        label: Label | None = None,
        approvals: Collection[str] = (),
        context: str | None = None,
    ) -> Decision:
        """A tool call: the policy's grant, the plan node's ``grant`` (None: not plan-locked)
        and the task's provenance ``label`` (None: trusted), then the exfiltration checks
        (what the arguments would send out; ``context``: the run, for the copy check), then
        the limits, then the scanner over the arguments. ``approvals`` holds the exact calls a
        human approved. The exfiltration checks come after the grants, so a call the plan or
        provenance refuses is refused for that (the clearer reason), and before the limits,
        so a leak refused counts against the circuit breaker and spends no budget. A refusal
        counts against the breaker; a call waiting for a human's approval does not."""
        gate = gate_tool(self._policy, agent, tool)
        gate = grants.gate_call(
            self._policy, gate, tool, arguments, grant=grant, label=label, approvals=approvals
        )
        if gate.rule != grants.APPROVAL_RULE:  # already waiting for a human: one question
            gate = self._outbound.call(
                gate, agent, tool, arguments, grant=grant, label=label,
                approvals=approvals, context=context,
            )  # fmt: skip
        if not awaits_approval(gate.rule):
            gate = self._limits.admit(gate, agent, target=tool, tool=True)
        judgement = screen(gate, arguments, self._policy, "on_tool_arguments")
        return self._record("tool_call", agent, tool, arguments, judgement)

    def vet_tool_result(
        self, agent: str, tool: str, content: str, *, context: str | None = None
    ) -> Decision:
        """A tool's result on its way to the agent: the scanner only. An untrusted result let
        through is remembered for the run's copy check."""
        gate = Judgement(Verdict.ALLOW, "scanning.on_tool_result", f"result for {agent!r}")
        judgement = screen(gate, content, self._policy, "on_tool_result")
        decision = self._record("tool_result", agent, tool, content, judgement)
        self._outbound.heard(decision, content, context)
        return decision

    def reset_breaker(self, agent: str) -> bool:
        """Close ``agent``'s circuit breaker and forget its violations; True if it was open."""
        return self._limits.reset(agent)

    def breakers(self) -> list[BreakerStatus]:
        """Every circuit breaker that is open or counting violations, by principal."""
        return self._limits.statuses()

    def decisions(self, *, since: int = 0) -> list[Decision]:
        """Recorded decisions with ``seq > since``, in order (a cursor: pass the last seq seen)."""
        with self._lock:
            if not self._log:
                return []
            start = max(0, since - self._log[0].seq + 1)
            return list(itertools.islice(self._log, start, None))

    def quarantine(self) -> list[QuarantineItem]:
        """Everything held in quarantine, oldest first."""
        with self._lock:
            return list(self._quarantine.values())

    def get_quarantined(self, id: str) -> QuarantineItem:
        """One quarantined item by id; KeyError if this monitor holds no such item."""
        with self._lock:
            try:
                return self._quarantine[id]
            except KeyError:
                raise KeyError(f"no quarantined item {id!r}") from None

    def _record(
        self, kind: Kind, principal: str, target: str, content: str, judgement: Judgement
    ) -> Decision:
        digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
        verdict = Verdict(judgement.verdict)
        with self._lock:
            self._seq += 1
            decision = Decision(
                seq=self._seq,
                at=time.time(),
                kind=kind,
                principal=principal,
                target=target,
                verdict=verdict,
                # redacted at the source: decisions travel in errors, logs and Mesh.decisions()
                reason=redact(judgement.reason),
                rule=judgement.rule,
                findings=[
                    f.model_copy(update={"excerpt": redact(f.excerpt)}) for f in judgement.findings
                ],
                content_sha256=digest,
                quarantine_id=f"q-{uuid.uuid4().hex}" if verdict is Verdict.QUARANTINE else None,
            )
            if self._audit is not None:  # fails closed: a decision it cannot record raises
                self._audit.append(decision)
            self._log.append(decision)
            if decision.quarantine_id is not None:
                self._quarantine[decision.quarantine_id] = QuarantineItem(
                    id=decision.quarantine_id,
                    decision_seq=decision.seq,
                    content=content,
                    at=decision.at,
                )
        return decision

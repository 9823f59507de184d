"""The security actor's decision logic: a policy kept as data, a verdict on every path.

Every message between agents, every reply, every tool call and every tool result passes a
:class:`SecurityMonitor`. It is a plain class (the mesh wraps it in a Ray actor) so it can be
tested, pickled and pooled: a verdict is a pure function of the policy and the input; only the
decision log, the quarantine store and the policy's limits (rate limits, budgets, circuit
breakers: ``_private/limits.py``) are state.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agentmesh._private import exfiltration, grants, policy_io
from agentmesh._private.exfil_policy import ExfiltrationPolicy
from agentmesh._private.judge import Judgement, gate_message, gate_tool, screen
from agentmesh._private.limits import BreakerStatus, Limiter
from agentmesh._private.limits_policy import LimitsPolicy
from agentmesh._private.redact import redact
from agentmesh._private.sandbox import check_path
from agentmesh._private.scanner import Finding
from agentmesh.errors import (
    ApprovalRequired,
    BudgetExhausted,
    CircuitOpen,
    ContentQuarantined,
    MessageBlocked,
    PolicyError,
    RateLimited,
    ToolCallBlocked,
)
from agentmesh.grants import ToolGrant, ToolLabel
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

Kind = Literal["message", "reply", "tool_call", "tool_result"]


class Verdict(StrEnum):
    """What happens to a message, tool call or content."""

    ALLOW = "allow"
    BLOCK = "block"
    QUARANTINE = "quarantine"


Glob = Annotated[str, AfterValidator(policy_io.check_glob)]
Globs = Annotated[list[Glob], BeforeValidator(policy_io.listify), Field(min_length=1)]
ToolGlob = Annotated[str, AfterValidator(policy_io.check_tool_glob)]
ToolGlobs = Annotated[list[ToolGlob], BeforeValidator(policy_io.listify)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )


class MessageRule(_Strict):
    """Senders matching ``from`` may message targets matching ``to`` ("agent" or "agent.skill")."""

    from_: Globs = Field(alias="from")
    to: Globs

    def matches(self, sender: str, recipient: str, skill: str) -> bool:
        """True if this rule lets ``sender`` call ``recipient.skill``."""
        target = f"{recipient}.{skill}"
        return any(fnmatchcase(sender, p) for p in self.from_) and any(
            fnmatchcase(recipient, p) or fnmatchcase(target, p) for p in self.to
        )


class ScanPolicy(_Strict):
    """Content scanning: a score at or above ``threshold`` applies the verdict for that path."""

    enabled: bool = True
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    on_message: Verdict = Verdict.BLOCK
    on_reply: Verdict = Verdict.QUARANTINE
    on_tool_result: Verdict = Verdict.QUARANTINE
    on_tool_arguments: Verdict = Verdict.BLOCK
    #: Scanner rule names or whole categories to ignore (for known false positives).
    disabled_rules: Annotated[
        list[str], policy_io.none_to(list), AfterValidator(policy_io.check_rule_names)
    ] = []


SandboxPaths = Annotated[
    list[Annotated[str, AfterValidator(check_path)]],
    BeforeValidator(lambda v: [] if v is None else policy_io.listify(v)),
]


class SandboxGrant(_Strict):
    """What the sandbox of the stdio MCP servers matching a glob may have beyond their config.

    ``writable`` and ``readable`` (absolute paths) are added to the server's own sandbox.
    ``network`` is needed for a server to keep the network, and is not enough alone: its config
    must ask for it too (``Sandbox(network=True)``). Every grant whose glob matches applies.
    """

    network: bool = False
    writable: SandboxPaths = []
    readable: SandboxPaths = []


class Policy(_Strict):
    """A security policy; the principal ``user`` is the human/driver side of the mesh."""

    name: str = Field(min_length=1)
    description: str = ""
    default: Verdict = Verdict.BLOCK
    messages: Annotated[list[MessageRule], policy_io.none_to(list)] = []
    tools: Annotated[dict[Glob, ToolGlobs], policy_io.none_to(dict)] = {}
    scanning: Annotated[ScanPolicy, policy_io.none_to(ScanPolicy)] = ScanPolicy()
    sandbox: Annotated[dict[Glob, SandboxGrant], policy_io.none_to(dict)] = {}
    """Server-name glob -> what those stdio MCP servers' sandboxes may have in addition."""
    tool_labels: Annotated[dict[ToolGlob, ToolLabel], policy_io.none_to(dict)] = {}
    """Tool glob -> what the tools do (see :mod:`agentmesh.grants`); unlabelled tools are
    side-effecting with every argument sensitive. An exact name wins over a glob."""
    limits: Annotated[LimitsPolicy, policy_io.none_to(LimitsPolicy)] = LimitsPolicy()
    """Rate limits, budgets and the circuit breaker (``_private/limits.py``); none by default."""
    exfiltration: Annotated[ExfiltrationPolicy, policy_io.none_to(ExfiltrationPolicy)] = (
        ExfiltrationPolicy()
    )
    """What may leave: URLs, addresses, secrets, copied untrusted data
    (``_private/exfiltration.py``)."""

    def message_rule(self, sender: str, recipient: str, skill: str) -> int | None:
        """Index of the first message rule allowing this call, or None."""
        return next(
            (i for i, r in enumerate(self.messages) if r.matches(sender, recipient, skill)), None
        )

    def tool_grant(self, agent: str, tool: str) -> str | None:
        """The grant ("tools[agent-glob]: tool-glob") that lets ``agent`` call ``tool``, or None."""
        for agent_glob, tool_globs in self.tools.items():
            if fnmatchcase(agent, agent_glob):
                for tool_glob in tool_globs:
                    if fnmatchcase(tool, tool_glob):
                        return f"tools[{agent_glob!r}]: {tool_glob!r}"
        return None

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> Policy:
        """Parse and validate YAML text; every problem is a PolicyError naming ``source``."""
        return _parse(text, source=source, default_name=None)


def _parse(text: str, *, source: str, default_name: str | None) -> Policy:
    data = policy_io.read_yaml_mapping(text, source=source)
    if default_name is not None:
        data.setdefault("name", default_name)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(policy_io.format_validation_error(source, exc)) from None


def available_policies() -> list[str]:
    """Names of the policy packs bundled in ``agentmesh.policies``."""
    return policy_io.available_packs()


def load_policy(name_or_path: str) -> Policy:
    """Load a bundled pack by bare name ("default") or, with a slash or .yaml/.yml, a file."""
    text, source, default_name = policy_io.read_policy_source(name_or_path)
    return _parse(text, source=source, default_name=default_name)


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
        if not _awaits_approval(gate.rule):
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


def _awaits_approval(rule: str) -> bool:
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
    if _awaits_approval(decision.rule):
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

"""Exfiltration checks on what leaves: tool arguments, messages to remote agents, replies.

Outbound paths and what each looks for by default (the policy's ``exfiltration.checks``):

- Every tool call's arguments, read-only tools included: a read-only fetch of
  ``attacker.example/?q=<secret>`` is the classic channel, and the mesh cannot know whether a
  tool's server reaches the network. Read-only tools skip the copy check (reading a page and
  counting its words is their job, not a leak).
- Skill calls to remote A2A agents: the data leaves the mesh with the message.
- Replies to A2A gateway callers (``user:<name>``): secrets only; the caller asked, and a URL in
  an answer is ordinary (the scanner still looks for image-link beacons).
- Messages and replies between the mesh's own agents: secrets only. Nothing leaves yet (the
  agent that would send it is checked where it does), but a secret handed on widens who holds
  it. Messages from the user and replies to the driver (``user``) come in: not checked.

URLs and addresses are looked for only in untrusted data by default (``untrusted_only``): on
the user's own data the destination is the user's. A plan grant speaks for the user too: an
argument it constrains is not checked, and when it constrains every sensitive argument (the
tool label's) the call goes where the user said, so only secrets are looked for. Findings:
``exfil.url`` (scheme URLs, ``hxxp://``, ``example[.]com`` and ``(dot)`` forms, the real host
after a ``user@``, schemeless ``host.tld/path`` under a known top-level domain, IPv4 with a port
or path), ``exfil.email`` (``[at]`` forms too), ``exfil.secret`` (the credential rules of
``redact.py``), ``exfil.copied_untrusted`` (``copy_memory.py``). Not found: schemeless IPv6,
schemeless hosts under other top-level domains, encoded data (the scanner decodes those).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pydantic import BaseModel, ConfigDict, JsonValue

from agentmesh._private import redact as _redact
from agentmesh._private.copy_memory import CopyMemory
from agentmesh._private.exfil_find import find_emails, find_hosts, mask
from agentmesh._private.exfil_policy import (
    ExfilAction,
    ExfilKind,
    ExfiltrationPolicy,
    email_allowed,
    host_allowed,
)
from agentmesh._private.grants import call_key, tool_label
from agentmesh._private.judge import Judgement
from agentmesh._private.scanner import Finding
from agentmesh.grants import Effect, ToolGrant
from agentmesh.provenance import Label, Trust

if TYPE_CHECKING:
    from agentmesh._private.decisions import Decision
    from agentmesh._private.policy_schema import Policy

__all__ = [
    "OutboundFinding",
    "OutboundGuard",
    "check_outbound",
    "is_user",
    "outbound_path",
]

_ALLOW = "allow"


def is_user(principal: str) -> bool:
    """The driver (``user``) or an A2A gateway caller (``user:<name>``)."""
    return principal == "user" or principal.startswith("user:")


def outbound_path(sender: str, recipient: str, remote: Collection[str]) -> str | None:
    """The ``exfiltration.checks`` entry of a message or reply; None: it comes in."""
    if is_user(sender) or sender in remote:
        return None
    if recipient in remote:
        return "remote_messages"
    if recipient.startswith("user:"):
        return "gateway_replies"
    return None if recipient == "user" else "internal_messages"


class _Found(NamedTuple):
    kind: ExfilKind
    what: str  # "argument 'url' sends data to host 'evil.example'"
    excerpt: str


def _find(
    text: str,
    where: str,
    kinds: Collection[ExfilKind],
    cfg: ExfiltrationPolicy,
    memory: CopyMemory | None,
    context: str | None,
) -> Iterator[_Found]:
    if ExfilKind.URL in kinds:
        for host, data, url in dict.fromkeys(find_hosts(text)):
            if not host_allowed(host, cfg.allowed_hosts):
                note = " with data in its path or query" if data else ""
                what = f"{where} sends a URL{note} to host {host[:80]!r}, not in allowed_hosts"
                yield _Found(ExfilKind.URL, what, url[:160])
    if ExfilKind.EMAIL in kinds:
        for address in dict.fromkeys(find_emails(text)):
            if not email_allowed(address, cfg.allowed_emails):
                what = f"{where} names the address {mask(address)}, not in allowed_emails"
                yield _Found(ExfilKind.EMAIL, what, address)
    if ExfilKind.SECRET in kinds:
        for kind, start, end in _redact.find(text, cfg.secret_kinds):
            what = f"{where} carries a secret ([REDACTED:{kind}])"
            yield _Found(ExfilKind.SECRET, what, text[max(0, start - 40) : end + 40])
    if ExfilKind.COPIED_UNTRUSTED in kinds and memory is not None:
        run, sources = memory.copied(context, text)
        if run:
            origin = f" (from {', '.join(sources)})" if sources else ""
            what = f"{where} holds a run of {run} words copied from untrusted data{origin}"
            yield _Found(ExfilKind.COPIED_UNTRUSTED, what, text[:160])


def _strings(value: JsonValue, path: str) -> Iterator[tuple[str, str]]:
    """Every string (keys too) in a JSON value, with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from _strings(item, f"{path}.{key}")


def _pinned(grant: Sequence[ToolGrant] | None, tool: str, args: dict[str, JsonValue]) -> set[str]:
    """The arguments the node's plan grant fixes (the user's values, not the data's); empty
    when no grant covers the call."""
    for g in grant or ():
        if g.covers(tool) and not g.refused_arguments(args):
            return set(g.args)
    return set()


_ORDER = {ExfilAction.BLOCK: 0, ExfilAction.APPROVE: 1, ExfilAction.ALLOW: 2}


def _verdict(
    gate: Judgement, found: list[_Found], cfg: ExfiltrationPolicy, *, approved: bool | None
) -> Judgement:
    """``approved`` None: no human can be asked (a message), so approve means block."""
    if not found:
        return gate
    findings = tuple(
        Finding(rule=f"exfil.{f.kind}", category="exfiltration", score=1.0, excerpt=f.excerpt)
        for f in found
    )
    actions = [cfg.action(f.kind) for f in found]
    if approved is None:
        actions = [ExfilAction.BLOCK if a is ExfilAction.APPROVE else a for a in actions]
    worst = min(range(len(found)), key=lambda i: _ORDER[actions[i]])
    action, first = actions[worst], found[worst]
    shown = "; ".join(f.what for f in found[:3]) + (" (and more)" if len(found) > 3 else "")
    if action is ExfilAction.ALLOW:
        return gate._replace(reason=f"{gate.reason}; {shown}: let through by the policy")
    if action is ExfilAction.APPROVE:
        if approved:
            return Judgement(_ALLOW, "exfil.approved", f"{shown}; a human approved it", findings)
        rule = f"exfil.{first.kind}.approval_required"
        return Judgement("block", rule, f"{shown}: it needs a human's approval", findings)
    return Judgement("block", f"exfil.{first.kind}", shown, findings)


def _kinds(kinds: list[ExfilKind], cfg: ExfiltrationPolicy, label: Label | None) -> set[ExfilKind]:
    trusted = label is None or label.trusted
    return {k for k in kinds if not (trusted and k in cfg.untrusted_only)}


class OutboundGuard:
    """The checks with their state, for one security monitor: what each run read (the copy
    memory) and which mesh members are remote agents."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.memory = CopyMemory(policy.exfiltration.copy_min_words)
        self.remote: frozenset[str] = frozenset()

    def call(
        self,
        gate: Judgement,
        agent: str,
        tool: str,
        payload: str,
        *,
        grant: Sequence[ToolGrant] | None,
        label: Label | None,
        approvals: Collection[str],
        context: str | None,
    ) -> Judgement:
        """Narrow an allowed tool call's verdict by what its arguments would send out."""
        if gate.verdict != _ALLOW or not self.policy.exfiltration.enabled:
            return gate
        cfg = self.policy.exfiltration.effective(agent, tool)
        entry = tool_label(self.policy, tool)
        read_only = entry.effect is Effect.READ_ONLY
        kinds = _kinds(
            cfg.checks.read_only_tool_calls if read_only else cfg.checks.tool_calls, cfg, label
        )
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload
        args = parsed if isinstance(parsed, dict) else {"(arguments)": parsed}
        pinned = _pinned(grant, tool, args)
        sensitive = entry.sensitive if entry.sensitive is not None else list(args)
        if pinned and all(name in pinned for name in sensitive if name in args):
            kinds &= {ExfilKind.SECRET}  # the plan fixed where it goes: it goes to the user's
        found = [
            f
            for name, value in args.items()
            if name not in pinned
            for path, text in _strings(value, name)
            for f in _find(text, f"argument {path!r}", kinds, cfg, self.memory, context)
        ]
        return _verdict(gate, found, cfg, approved=call_key(tool, payload) in approvals)

    def text(
        self,
        gate: Judgement,
        sender: str,
        recipient: str,
        target: str,
        content: str,
        *,
        label: Label | None,
        context: str | None,
    ) -> Judgement:
        """Narrow an allowed message's or reply's verdict, if it goes out (``outbound_path``)."""
        path = outbound_path(sender, recipient, self.remote)
        if path is None or gate.verdict != _ALLOW or not self.policy.exfiltration.enabled:
            return gate
        cfg = self.policy.exfiltration.effective(sender, target)
        kinds = _kinds(getattr(cfg.checks, path), cfg, label)
        found = list(_find(content, "the content", kinds, cfg, self.memory, context))
        return _verdict(gate, found, cfg, approved=None)

    def heard(self, decision: Decision, content: str, context: str | None) -> None:
        """Remember what a run let in: the user's own words (trusted), remote agents' replies
        and tool results the policy does not trust."""
        if decision.verdict != _ALLOW:
            return
        who, kind, target = decision.principal, decision.kind, decision.target
        if kind == "message" and is_user(who):
            self.memory.remember(context, content, trusted=True, source=who)
        elif kind == "reply" and who in self.remote:
            self.memory.remember(context, content, trusted=False, source=f"remote:{who}")
        elif kind == "tool_result" and (
            tool_label(self.policy, target).result_trust is not Trust.TRUSTED
        ):
            self.memory.remember(context, content, trusted=False, source=f"tool:{target}")


class OutboundFinding(BaseModel):
    """Something an outbound text would send that the policy does not allow, and its verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ExfilKind
    detail: str
    action: ExfilAction


def check_outbound(data: JsonValue, *, policy: Policy | str = "default") -> list[OutboundFinding]:
    """What ``data`` (a text, or a tool call's JSON arguments) would send out that the
    policy's ``exfiltration:`` section does not allow: URLs, addresses and secrets, as if the
    data were untrusted. No copy check (that needs a run's memory). Details are redacted."""
    from agentmesh._private.policy_schema import load_policy

    cfg = (load_policy(policy) if isinstance(policy, str) else policy).exfiltration
    kinds = {ExfilKind.URL, ExfilKind.EMAIL, ExfilKind.SECRET}
    found = [
        f
        for path, text in _strings(data, "data")
        for f in _find(text, path, kinds, cfg, None, None)
    ]
    return [
        OutboundFinding(kind=f.kind, detail=_redact.redact(f.what), action=cfg.action(f.kind))
        for f in found
    ]

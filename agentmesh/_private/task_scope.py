"""What a running task carries besides its arguments: its provenance label, its plan grant and
the calls a human approved for it.

The label starts as the join of the request's part labels and only gets less trusted as the
task reads tool results and other agents' replies; it is sent with every tool call (the
security actor judges by it) and stamped on every part the task answers with. The grant comes
from the plan node (the executor's skill call) and is passed on unchanged to the task's own
nested calls, so nothing the task reads can widen it. Both ride in the skill-call message,
where only a router writes them (``stamp_message`` drops whatever an outside caller claimed).
"""

from __future__ import annotations

import contextvars
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from a2a.types import Message, Part
from pydantic import JsonValue, TypeAdapter, ValidationError

from agentmesh._private.idempotency import (
    IdempotencyScope,
    read_idempotency,
    stamp_idempotency,
)
from agentmesh._private.record_sink import Json
from agentmesh._private.redact import redact
from agentmesh.errors import ApprovalDenied, ApprovalRequired, InputRequired, UserError
from agentmesh.grants import ToolGrant
from agentmesh.models import Usage
from agentmesh.protocols.a2a_tasks import META_KEY
from agentmesh.protocols.mcp import ToolResult
from agentmesh.provenance import Label, message_label, set_part_label

__all__ = [
    "APPROVE_FIELD",
    "SCOPE",
    "TaskScope",
    "approval_question",
    "read_approvals",
    "read_grant",
    "request_scope",
    "resumed_scope",
    "stamp_call",
    "stamp_result",
    "take_approval",
]

#: The answer field of an approval question (``Mesh.resume(agent, task_id, approve=True)``).
APPROVE_FIELD = "approve"
_GRANT = "grant"
_META = META_KEY
_GRANTS = TypeAdapter(list[ToolGrant])
_APPROVALS = "approvals"
_KEYS = TypeAdapter(list[str])


@dataclass
class TaskScope:
    """One task's label, grant and approvals; shared by every coroutine of the task."""

    label: Label
    grant: tuple[ToolGrant, ...] | None = None
    granted: Counter[str] = field(default_factory=Counter)
    """Every approval a human gave this task (a resumed task runs from the start again, so
    each run may use each of them once)."""
    origin: Label | None = None
    """The label the task started with (a resumed task starts again from it)."""
    approvals: Counter[str] = field(init=False, default_factory=Counter)
    """The approvals this run has not used yet."""
    journal: list[tuple[str, ToolResult]] = field(default_factory=list)
    """The task's tool calls that ran, in order: a rerun after a resume replays them instead
    of running them again, so an approved transfer is not made twice."""
    replayed: int = field(init=False, default=0)
    run: str = ""
    """The context id of the task's first request: the key of what the security actor
    remembers this run read from untrusted sources (the exfiltration copy check)."""
    idempotency: IdempotencyScope | None = None
    """The run node this task works for (None outside a plan run): keys its tool calls."""
    usage: Usage = field(default_factory=Usage)
    """The task's model calls, its nested agent calls' included (reported on its end)."""
    events: list[Json] = field(default_factory=list)
    """What the task did, for the flight recorder (``record_sink``; reported on its end)."""

    def __post_init__(self) -> None:
        if self.origin is None:
            self.origin = self.label
        self.approvals = Counter(self.granted)

    def approve(self, key: str) -> None:
        """A human approved one more use of the exact call ``key``."""
        self.granted[key] += 1
        self.approvals[key] += 1

    def absorb(self, label: Label) -> None:
        """The task has read data labelled ``label``."""
        self.label = self.label.join(label)

    def replay(self, key: str) -> ToolResult | None:
        """The recorded result of this run's next call if an earlier run made the same one."""
        if self.replayed < len(self.journal) and self.journal[self.replayed][0] == key:
            self.replayed += 1
            return self.journal[self.replayed - 1][1]
        del self.journal[self.replayed :]  # the run went another way: the rest is not its past
        return None

    def record(self, key: str, result: ToolResult) -> None:
        self.journal.append((key, result))
        self.replayed = len(self.journal)

    def tool_extras(self, key: str) -> dict[str, Any]:
        """What goes with a tool call to the security actor; an approval is used up here."""
        approvals = (key,) if self.approvals[key] > 0 else ()
        if approvals:
            self.approvals[key] -= 1  # each approval is good for one call
        grant = list(self.grant) if self.grant is not None else None
        extras = {"grant": grant, "label": self.label, "approvals": approvals}
        return extras | ({"context": self.run} if self.run else {})


#: The scope of the task being served (set where the skill starts, like CONTEXT_ID).
SCOPE: contextvars.ContextVar[TaskScope] = contextvars.ContextVar("agentmesh_task_scope")


def stamp_call(
    message: Message,
    *,
    label: Label | None,
    grant: Sequence[ToolGrant] | None,
    idempotency: IdempotencyScope | None = None,
    approvals: Sequence[str] = (),
) -> None:
    """Write the sender's label on a skill call's parts, the grant, the run node it works
    for (see :mod:`agentmesh._private.idempotency`) and the calls a human approved for it (a
    paused run's node, run again after the answer) in its metadata."""
    if label is not None:
        for part in message.parts:
            set_part_label(part, label)
    if grant is not None:
        payload = json.dumps([g.model_dump(mode="json") for g in grant])
        message.metadata.fields[_META].struct_value.fields[_GRANT].string_value = payload
    if idempotency is not None:
        stamp_idempotency(message, idempotency)
    if approvals:
        meta = message.metadata.fields[_META].struct_value.fields[_APPROVALS]
        meta.string_value = json.dumps(list(approvals))


def read_approvals(message: Message) -> list[str]:
    """The approved calls a skill call carries ([] if none or malformed)."""
    fields = message.metadata.fields
    if _META not in fields or _APPROVALS not in fields[_META].struct_value.fields:
        return []
    try:
        return _KEYS.validate_json(fields[_META].struct_value.fields[_APPROVALS].string_value)
    except ValidationError as exc:
        raise UserError(f"the skill call carries malformed approvals: {exc}") from None


def read_grant(message: Message) -> tuple[ToolGrant, ...] | None:
    """The plan grant a skill call carries; None if it carries none (not plan-locked)."""
    fields = message.metadata.fields
    if _META not in fields:
        return None
    inner = fields[_META].struct_value.fields
    if _GRANT not in inner:
        return None
    try:
        return tuple(_GRANTS.validate_json(inner[_GRANT].string_value))
    except ValidationError as exc:
        raise UserError(f"the skill call carries a malformed plan grant: {exc}") from None


def request_scope(message: Message, sender: str) -> TaskScope:
    """The scope of a new task. A caller of the A2A gateway (``user:<name>``) is labelled as
    itself whatever its parts claim; the driver (``user``) and agents are believed, and an
    unlabelled part is the driver's input, or untrusted when an agent sent it. Approvals are
    the human's: only the driver's calls bring them (an agent's claim is ignored)."""
    if sender.startswith("user:"):
        label = Label.user(sender)
    else:
        fallback = Label.user(sender) if sender == "user" else Label.unknown(f"agent:{sender}")
        label = message_label(message) or fallback
    approved = Counter(read_approvals(message)) if sender == "user" else Counter[str]()
    return TaskScope(
        label=label,
        grant=read_grant(message),
        granted=approved,
        idempotency=read_idempotency(message),
    )


def resumed_scope(scope: TaskScope, message: Message, sender: str) -> TaskScope:
    """The scope of a task answered by ``message``: the answer's label joins in."""
    answer = request_scope(message, sender).label
    label = (scope.origin or scope.label).join(answer)
    granted = Counter(scope.granted)
    idempotency = scope.idempotency.fresh() if scope.idempotency is not None else None
    return TaskScope(
        label=label,
        grant=scope.grant,
        granted=granted,
        journal=list(scope.journal),
        run=scope.run,
        idempotency=idempotency,
    )


def take_approval(
    key: str, tool: str, args: dict[str, JsonValue], text: str | None
) -> tuple[str, dict[str, JsonValue]]:
    """Read the human's answer to an approval question: the approved call's key and the other
    arguments of the reply. Raises ApprovalDenied on no, UserError on no clear answer."""
    rest = {k: v for k, v in args.items() if k != APPROVE_FIELD}
    answer: object = args.get(APPROVE_FIELD, text)
    if isinstance(answer, str):
        answer = {"true": True, "yes": True, "false": False, "no": False}.get(answer.lower())
    if answer is True:
        return key, rest
    if answer is False:
        raise ApprovalDenied(f"the user did not approve the call of tool {tool!r}", tool=tool)
    raise UserError(f"answer the approval question with {APPROVE_FIELD}=true or false")


def approval_question(error: ApprovalRequired) -> InputRequired:
    """The question an approval puts to the user (the call's arguments shown, shortened)."""
    shown = redact(json.dumps(error.arguments or {}, sort_keys=True, ensure_ascii=False))
    if len(shown) > 400:
        shown = shown[:397] + "..."
    why = "The task has read untrusted data, which may have chosen them."
    decision = error.decision
    if decision is not None and decision.rule.startswith("exfil."):
        why = f"They may send data out: {decision.reason}."  # already redacted
    prompt = (
        f"Approve the call of tool {error.tool!r} with arguments {shown}? {why} "
        f"Answer {APPROVE_FIELD}=true or false."
    )
    return InputRequired(prompt, field=APPROVE_FIELD, tool=error.tool, approval=error.key)


def stamp_result(part: Part, scope: TaskScope | None, agent: str) -> Part:
    """Stamp a result part with the task's final label (and this agent as a source)."""
    if scope is not None:
        set_part_label(part, scope.label.join(Label.agent(agent)))
    return part

"""Plan-locked least privilege: what one plan node may do with tools, and what tools do.

The plan is made from the user's goal before any untrusted data is read, so the tools it grants
a node (:class:`ToolGrant`, on ``PlanStep.tools``) and the argument values it fixes (a recipient,
an account the user named) are the user's intent. The security actor refuses any call outside
the node's grant, whatever a hijacked model later asks for.

The policy labels tools (:class:`ToolLabel`): read-only or side-effecting, which arguments are
sensitive, and what to do with a side-effecting call whose sensitive arguments may come from
untrusted data (block, allow, or ask a human). A tool with no label is side-effecting, with
every argument sensitive. :func:`check_tool_call` gives the same decision outside a mesh.
"""

from __future__ import annotations

from enum import StrEnum
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from agentmesh._private import policy_io
from agentmesh.provenance import Label, Trust

if TYPE_CHECKING:
    from agentmesh._private.decisions import Decision
    from agentmesh._private.policy_schema import Policy

__all__ = [
    "Effect",
    "Equals",
    "Matches",
    "OneOf",
    "ToolGrant",
    "ToolLabel",
    "UntrustedArguments",
    "check_tool_call",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Equals(_Strict):
    """The argument must be exactly this JSON value (a bare non-object value means this too)."""

    equals: JsonValue

    def allows(self, value: JsonValue) -> bool:
        return _same(value, self.equals)


class OneOf(_Strict):
    """The argument must be one of these JSON values."""

    one_of: list[JsonValue] = Field(min_length=1)

    def allows(self, value: JsonValue) -> bool:
        return any(_same(value, choice) for choice in self.one_of)


class Matches(_Strict):
    """The argument must be a string matching this shell glob (``"*@example.com"``)."""

    glob: Annotated[str, Field(min_length=1)]

    def allows(self, value: JsonValue) -> bool:
        return isinstance(value, str) and fnmatchcase(value, self.glob)


def _same(a: JsonValue, b: JsonValue) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _constraint(value: Any) -> Any:
    """A bare value is shorthand for ``{equals: value}``; an object must be a constraint."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, dict):
        keys = set(value)
        if keys in ({"equals"}, {"one_of"}, {"glob"}):
            return value
        raise ValueError(
            "an argument constraint that is an object must be {equals: ...}, {one_of: [...]} "
            f"or {{glob: ...}}, not keys {sorted(keys)}"
        )
    return {"equals": value}


Constraint = Annotated[Equals | OneOf | Matches, BeforeValidator(_constraint)]
ToolGlob = Annotated[str, AfterValidator(policy_io.check_tool_glob)]


class ToolGrant(_Strict):
    """One tool (a ``"server.tool"`` glob) a plan node may call, with argument constraints.

    Arguments not named in ``args`` are free; a named one must satisfy its constraint, and is
    then *pinned*: its value was fixed by the plan, not by whatever the node read since.
    """

    tool: ToolGlob
    args: dict[str, Constraint] = {}

    def covers(self, tool: str) -> bool:
        return fnmatchcase(tool, self.tool)

    def refused_arguments(self, arguments: dict[str, JsonValue]) -> list[str]:
        """The names of the constrained arguments this call gets wrong (missing or other)."""
        return sorted(
            name
            for name, constraint in self.args.items()
            if name not in arguments or not constraint.allows(arguments[name])
        )

    def describe(self) -> str:
        pinned = f" with {sorted(self.args)} fixed" if self.args else ""
        return f"{self.tool!r}{pinned}"


class Effect(StrEnum):
    READ_ONLY = "read-only"
    SIDE_EFFECTING = "side-effecting"


class UntrustedArguments(StrEnum):
    """What happens to a side-effecting call made on untrusted data with unpinned sensitive
    arguments."""

    BLOCK = "block"
    ALLOW = "allow"
    APPROVE = "approve"  # the task waits (input-required) for a human's yes or no


class ToolLabel(_Strict):
    """What the policy knows about the tools matching a glob."""

    effect: Effect = Effect.SIDE_EFFECTING
    sensitive: Annotated[list[str], BeforeValidator(policy_io.listify)] | None = None
    """Arguments that decide what the call does (a recipient, an account, a path). None: all."""
    untrusted_arguments: UntrustedArguments = UntrustedArguments.BLOCK
    result_trust: Trust = Trust.UNTRUSTED
    """Whether this tool's results count as trusted (only for tools that never relay the
    outside world, such as a clock)."""


#: The label of a tool no policy entry names: side-effecting, every argument sensitive.
UNKNOWN_TOOL = ToolLabel()


def check_tool_call(
    policy: Policy,
    agent: str,
    tool: str,
    args: dict[str, JsonValue],
    *,
    grant: list[ToolGrant] | None = None,
    label: Label | None = None,
) -> Decision:
    """Decide, outside any mesh, whether ``agent`` may call ``tool`` with ``args``: the
    policy's grant, the node's ``grant`` (None: not plan-locked), the data's ``label``
    (None: trusted user input) and the scanner, as the security actor decides in a mesh.
    Never raises on a refusal: ``decision.verdict`` and ``decision.reason`` say why."""
    import json

    from agentmesh.security import SecurityMonitor

    payload = json.dumps(args, sort_keys=True)
    return SecurityMonitor(policy).vet_tool_call(agent, tool, payload, grant=grant, label=label)

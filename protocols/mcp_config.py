"""MCP server configs: how to start or reach each server, and the sandbox a stdio one runs in.

Kept apart from the client pool (:mod:`agentmesh.protocols.mcp`, which re-exports these) because
the configs are plain schemas that the policy, the sandbox and the CLI read without a session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from agentmesh._private.sandbox import check_path

__all__ = [
    "HttpServer",
    "McpServerConfig",
    "Sandbox",
    "StdioServer",
    "unsandboxed_servers",
]

_NAME = re.compile(r"[A-Za-z0-9_-]+")


class _ServerBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Prefixes the server's tools as ``"name.tool"``, so it may not contain a dot."""
    start_timeout_s: float = Field(default=30.0, gt=0)
    """How long connecting and the handshake may take before the start fails."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"server name {name!r} must be non-empty and use only A-Z, a-z, 0-9, _ and -"
            )
        return name


SandboxPath = Annotated[str, AfterValidator(check_path)]


class Sandbox(BaseModel):
    """What a stdio MCP server may touch; the default allows nothing beyond running.

    The server runs under bubblewrap (see :mod:`agentmesh._private.sandbox`): its own
    namespaces, a read-only view of only what the program needs, a private ``/tmp``, no
    network, an environment of its own, and the limits below; under root, as a uid of its own.
    Inside a mesh the policy's ``sandbox`` section may add paths; the network needs both
    ``network=True`` here and a policy grant. Without a policy (a bare McpClientPool) this
    config is the whole sandbox.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: bool = False
    """Keep the host's network (without it: an empty network namespace, not even loopback)."""
    writable: list[SandboxPath] = []
    """Absolute paths bound read-write. A missing directory is created at start (mode 0700,
    owned by the server's own sandbox uid when the mesh runs as root); an existing one is left
    as it is, with a warning if that uid cannot write it."""
    readable: list[SandboxPath] = []
    """Extra absolute paths bound read-only (missing ones are skipped)."""
    cpu_seconds: int = Field(default=600, gt=0)
    """CPU time over the server's whole life; past it the kernel kills the server."""
    memory_mb: int = Field(default=1024, gt=0)
    """Address-space limit (virtual memory: a Python MCP server maps about 300-400 MB)."""
    max_processes: int = Field(default=128, gt=0)
    """Processes and threads the server's uid may have (a Python server runs about 5-10)."""
    max_file_mb: int = Field(default=64, gt=0)
    """The largest file the server may write, and the size of its private ``/tmp``."""


class StdioServer(_ServerBase):
    """An MCP server the pool starts as a child process and talks to over stdin/stdout."""

    transport: Literal["stdio"] = "stdio"
    command: list[str] = Field(min_length=1)
    """The argv: the first element is the program, the rest its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """Added to the sandbox's few variables (PATH, HOME=/tmp, LANG, ...), never to ours;
    unsandboxed, to mcp's small safe default environment."""
    cwd: str | None = None
    """The server's working directory (bound read-only into its sandbox)."""
    sandbox: Sandbox = Sandbox()
    """The sandbox it runs in; see :class:`Sandbox`."""
    unsandboxed: bool = False
    """Run it as a plain child process with the launcher's user, files and network: an explicit
    opt-out for a server you trust, logged as a warning every time it starts."""


def unsandboxed_servers(servers: Sequence[StdioServer | HttpServer]) -> list[str]:
    """Names of the stdio servers that opted out of the sandbox (for a warning)."""
    return [s.name for s in servers if isinstance(s, StdioServer) and s.unsandboxed]


class HttpServer(_ServerBase):
    """An MCP server that is already running and serves streamable HTTP."""

    transport: Literal["http"] = "http"
    url: str
    """The streamable HTTP endpoint, for example ``http://127.0.0.1:8765/mcp``."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request (for example an ``Authorization`` header)."""


McpServerConfig = Annotated[StdioServer | HttpServer, Field(discriminator="transport")]

"""The MCP tool plane: server configs and a pool of long-lived MCP client sessions.

Agents call tools as ``"server.tool"``. The pool connects every configured server once and keeps
each session open, because spawning a stdio server and handshaking costs about a second while a
call on an open session costs a few milliseconds. Each session is owned by its own asyncio task
(see :mod:`agentmesh._private.mcp_connection`), so the pool works inside an async Ray actor whose
methods run as separate tasks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Annotated, Literal, Self

import mcp_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

from agentmesh._private.mcp_connection import ServerConnection
from agentmesh._private.sandbox import check_path, check_sandbox_available
from agentmesh.errors import ConfigError, ToolError, ToolServerStartError, UnknownToolError
from agentmesh.provenance import Label

__all__ = [
    "HttpServer",
    "McpClientPool",
    "McpServerConfig",
    "Sandbox",
    "StdioServer",
    "ToolInfo",
    "ToolResult",
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


class ToolInfo(BaseModel):
    """A tool as its server last listed it (at connect or refresh), under its qualified name.

    Every field but ``server`` and ``qualified_name`` is part of the definition a model reads:
    :mod:`agentmesh._private.tool_vetting` pins it by hash and scans it for poisoning.
    """

    server: str
    name: str
    qualified_name: str
    description: str
    input_schema: dict[str, JsonValue]
    output_schema: dict[str, JsonValue] | None = None
    title: str | None = None
    annotations: dict[str, JsonValue] | None = None
    """The server's hints (``readOnlyHint``, ``destructiveHint``, ...) under their wire names."""


class ToolResult(BaseModel):
    """The outcome of one tool call; a tool-reported error is data here, not an exception."""

    server: str
    tool: str
    is_error: bool
    text: str
    """Every text content block of the result, joined by newlines."""
    structured: JsonValue | None = None
    """The server's ``structured_content``, when it sent one."""
    duration_s: float
    label: Label | None = None
    """Its provenance, set by the mesh's tool gateway (untrusted unless the policy says so)."""


def _tool_info(server: str, tool: mcp_types.Tool) -> ToolInfo:
    return ToolInfo(
        server=server,
        name=tool.name,
        qualified_name=f"{server}.{tool.name}",
        description=tool.description or "",
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        title=tool.title,
        annotations=(
            None
            if tool.annotations is None
            else tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        ),
    )


class McpClientPool:
    """Long-lived sessions to a fixed set of MCP servers, one session per server.

    Start it once (``await pool.start()`` or ``async with pool``), then call tools by qualified
    name from any task on the same event loop. A server that dies fails its calls with
    ToolServerDiedError until :meth:`reconnect`.
    """

    def __init__(self, servers: Sequence[McpServerConfig]) -> None:
        names = [s.name for s in servers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"MCP server names must be unique; repeated: {duplicates}")
        self._configs: dict[str, StdioServer | HttpServer] = {s.name: s for s in servers}
        self._conns: dict[str, ServerConnection] = {}
        self._tools: dict[str, list[ToolInfo]] = {}
        self._started = False
        self._closed = False

    async def start(self) -> None:
        """Connect every server concurrently; if any cannot start, close all and raise."""
        if self._closed:
            raise ToolError("this McpClientPool is closed; make a new one")
        if self._started:
            return
        boxed = [
            s.name for s in self._configs.values() if s.transport == "stdio" and not s.unsandboxed
        ]
        if boxed:
            check_sandbox_available(boxed)  # one SandboxUnavailableError for them all, at once
        self._started = True
        conns = {name: ServerConnection(cfg) for name, cfg in self._configs.items()}
        self._conns = conns
        outcomes = await asyncio.gather(
            *(c.start() for c in conns.values()), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            await asyncio.gather(*(c.close() for c in conns.values()))
            self._conns, self._started = {}, False  # a later start() may try again
            for failure in failures:
                if not isinstance(failure, Exception):
                    raise failure  # CancelledError and friends go through untouched
            if len(failures) == 1:
                raise failures[0]
            raise ToolServerStartError("; ".join(str(f) for f in failures))
        for name, conn in conns.items():
            self._tools[name] = [_tool_info(name, t) for t in conn.tools]

    def tools(self) -> list[ToolInfo]:
        """Every tool of every server, as listed when the server was (re)connected or refreshed."""
        return [info for infos in self._tools.values() for info in infos]

    async def call(
        self, qualified_name: str, arguments: dict[str, JsonValue], *, timeout_s: float = 60
    ) -> ToolResult:
        """Call ``"server.tool"``; a tool that reports an error gives ``is_error=True``.

        Raises UnknownToolError for a name no server offers, ToolServerDiedError when the
        server went away (now or earlier), and ToolError on a timeout.
        """
        self._check_open()
        server, _, tool = qualified_name.partition(".")
        if not any(t.name == tool for t in self._tools.get(server, [])):
            known = sorted(t.qualified_name for t in self.tools())
            raise UnknownToolError(f"no MCP server offers tool {qualified_name!r}; known: {known}")
        conn = self._conns[server]
        started = time.perf_counter()
        result = await conn.call_tool(tool, dict(arguments), timeout_s)
        texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]
        return ToolResult(
            server=server,
            tool=tool,
            is_error=bool(result.is_error),
            text="\n".join(texts),
            structured=result.structured_content,
            duration_s=time.perf_counter() - started,
        )

    def alive(self, name: str) -> bool:
        """Whether server ``name`` is connected and has not died since."""
        conn = self._conns.get(name)
        return conn is not None and conn.alive

    async def reconnect(self, name: str) -> None:
        """Close the named server's session (dead or alive) and connect it afresh."""
        if name not in self._configs:
            raise UnknownToolError(f"no MCP server named {name!r}; known: {sorted(self._configs)}")
        self._check_open()
        old = self._conns[name]
        await old.close()
        conn = ServerConnection(self._configs[name])
        self._conns[name] = conn  # dead until started: calls meanwhile fail fast
        await conn.start()
        self._tools[name] = [_tool_info(name, t) for t in conn.tools]

    async def refresh(self, name: str | None = None) -> list[ToolInfo]:
        """List the tools of one server (or of every server) again on the open sessions.

        A server may change its tool definitions at any time. mcp 2.3.0 announces such a change
        (``notifications/tools/list_changed``) only on a ``subscriptions/listen`` stream at
        protocol 2026-07-28, which the pool does not hold open; so the owner re-lists: at start,
        at :meth:`reconnect` and here (the gateway before approving). Returns the refreshed
        servers' tools. A server that is gone keeps its previous listing and raises
        ToolServerDiedError after the others are refreshed.
        """
        self._check_open()
        if name is not None and name not in self._configs:
            raise UnknownToolError(f"no MCP server named {name!r}; known: {sorted(self._configs)}")
        names = [name] if name is not None else list(self._conns)
        outcomes = await asyncio.gather(
            *(self._conns[n].relist_tools(self._configs[n].start_timeout_s) for n in names),
            return_exceptions=True,
        )
        failures: list[BaseException] = []
        for server, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
            else:
                self._tools[server] = [_tool_info(server, t) for t in outcome]
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure  # CancelledError and friends go through untouched
        if failures:
            raise failures[0]
        return [info for server in names for info in self._tools[server]]

    async def close(self) -> None:
        """Close every session and stop every stdio server; safe to call more than once."""
        self._closed = True
        await asyncio.gather(*(c.close() for c in self._conns.values()))

    def _check_open(self) -> None:
        if self._closed:
            raise ToolError("this McpClientPool is closed")
        if not self._started:
            raise ToolError("this McpClientPool is not started; await start() first")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

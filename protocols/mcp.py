"""The MCP tool plane: server configs and a pool of long-lived MCP client sessions.

Agents call tools as ``"server.tool"``. The pool connects every configured server once and keeps
each session open, because spawning a stdio server and handshaking costs about a second while a
call on an open session costs a few milliseconds. Each session is owned by its own asyncio task
(see :mod:`agentmesh._private.mcp_connection`), so the pool works inside an async Ray actor whose
methods run as separate tasks. The server configs live in :mod:`agentmesh.protocols.mcp_config`
and are re-exported here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import mcp_types
from pydantic import BaseModel, JsonValue

from agentmesh._private.mcp_connection import ServerConnection
from agentmesh._private.sandbox import check_sandbox_available
from agentmesh.errors import ConfigError, ToolError, ToolServerStartError, UnknownToolError
from agentmesh.protocols.mcp_config import (
    HttpServer,
    McpServerConfig,
    Sandbox,
    StdioServer,
    unsandboxed_servers,
)
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
    definition_hash: str | None = None
    """Inside a mesh: the hash of the tool's definition the call was checked against (its
    pin), set by the tool gateway; the flight recorder keeps it with the call."""


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
        self,
        qualified_name: str,
        arguments: dict[str, JsonValue],
        *,
        timeout_s: float = 60,
        meta: dict[str, Any] | None = None,
    ) -> ToolResult:
        """Call ``"server.tool"``; a tool that reports an error gives ``is_error=True``.
        ``meta`` goes in the request's ``_meta`` (the mesh's idempotency key, for one).

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
        result = await conn.call_tool(tool, dict(arguments), timeout_s, meta=meta)
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

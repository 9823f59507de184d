"""One long-lived connection to one MCP server, owned by one dedicated asyncio task.

The mcp client and its transports use anyio task groups and cancel scopes, which must be entered
and exited in the same task. An async Ray actor runs each method call as its own asyncio task, so
the connection cannot be opened in ``start()`` and closed in ``close()`` directly: an owner task
enters the client, reports ready, and waits for a close request or for the transport to end.
Calls from other tasks use the shared session; a connection that dies fails them at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import mcp_types
from mcp import Client, MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from agentmesh._private.mcp_transport import StderrTail, http_transport, stdio_transport
from agentmesh._private.sandbox import check_sandbox_available
from agentmesh.errors import (
    ToolCallError,
    ToolError,
    ToolServerDiedError,
    ToolServerStartError,
    ToolTimeoutError,
)

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

    from agentmesh.protocols.mcp_config import HttpServer, StdioServer

__all__ = ["ServerConnection"]

logger = logging.getLogger("agentmesh.mcp")

_CLIENT_INFO: Final = mcp_types.Implementation(name="agentmesh", version="0.1.0")
_CLOSE_WAIT_S: Final = 15.0  # the stdio transport's own shutdown is bounded at about 6 s
_TIMEOUT_SLACK_S: Final = 5.0


def _describe(exc: BaseException) -> str:
    """A one-line cause, looking through the single-member exception groups anyio raises."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    if isinstance(exc, MCPError) and exc.error.code == CONNECTION_CLOSED:
        return "the connection closed (the server exited or dropped it)"
    return f"{type(exc).__name__}: {exc}"


class ServerConnection:
    """A started MCP server's session; see the module docstring for why a task owns it."""

    def __init__(self, config: StdioServer | HttpServer) -> None:
        self.config = config
        self.name = config.name
        self.tools: list[mcp_types.Tool] = []
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()  # set to make the owner leave: close requested or lost
        self._dead = asyncio.Event()
        self._closing = False
        self._cause: str | None = None
        self._stderr: StderrTail | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection and list its tools; raise ToolServerStartError if it cannot."""
        cfg = self.config
        if cfg.transport == "stdio":
            if cfg.unsandboxed:
                logger.warning(
                    "MCP server %r runs UNSANDBOXED (unsandboxed=True): it gets this process's "
                    "user, files and network",
                    self.name,
                )
            else:
                check_sandbox_available(self.name)  # SandboxUnavailableError, typed, at once
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._owner = loop.create_task(self._own(), name=f"mcp-connection-{self.name}")
        self._owner.add_done_callback(self._owner_done)
        # The owner enforces start_timeout_s itself; this only guards against a wedged owner.
        backstop = self.config.start_timeout_s + _CLOSE_WAIT_S
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), backstop)
        except TimeoutError:
            await self.close()
            raise self._start_error(f"no handshake within {self.config.start_timeout_s}s") from None
        except asyncio.CancelledError:
            await self.close()  # do not leave a half-started server behind
            raise

    async def close(self) -> None:
        """Ask the owner to leave the client context and wait for it; idempotent."""
        self._closing = True
        self._mark_dead("the connection was closed")
        owner = self._owner
        if owner is not None and not owner.done():
            done, _ = await asyncio.wait({owner}, timeout=_CLOSE_WAIT_S)
            if not done:
                owner.cancel()
                await asyncio.wait({owner})

    async def _own(self) -> None:
        assert self._ready is not None
        cfg = self.config
        try:
            if cfg.transport == "stdio":
                self._stderr = StderrTail(self.name)
                await self._stderr.start()
            with anyio.CancelScope() as start_scope:
                start_scope.deadline = anyio.current_time() + cfg.start_timeout_s
                async with Client(
                    self._transport(), cache=None, client_info=_CLIENT_INFO
                ) as client:
                    self.tools = await self._list_tools(client)
                    start_scope.deadline = math.inf
                    self._client = client
                    self._ready.set_result(None)
                    try:
                        await self._wake.wait()
                    finally:
                        self._client = None  # the session is about to go; the cause comes later
            if start_scope.cancelled_caught and not self._ready.done():
                raise TimeoutError(f"no handshake within {cfg.start_timeout_s}s")
        except asyncio.CancelledError:
            self._fail_start("start was cancelled")
            raise
        except BaseException as exc:  # an owner task must report, never raise unobserved
            cause = _describe(exc)
            if not self._ready.done():
                await self._drain_stderr()
                self._fail_start(cause)
            else:
                self._mark_dead(cause)
        finally:
            if self._stderr is not None:
                await self._drain_stderr()
                self._stderr.close()

    def _transport(self) -> AbstractAsyncContextManager[TransportStreams]:
        cfg = self.config
        if cfg.transport == "stdio":
            assert self._stderr is not None
            return stdio_transport(cfg, self._stderr, self._lost)
        return http_transport(cfg, self._lost)

    @staticmethod
    async def _list_tools(client: Client) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return tools

    # --- death and failure -------------------------------------------------------------------

    def _lost(self) -> None:
        """The read stream ended: unless we are closing, the server went away."""
        if not self._closing:
            self._mark_dead("the connection closed (the server exited or dropped it)")
        self._wake.set()

    def _owner_done(self, task: asyncio.Task[None]) -> None:
        cause = "the connection was closed" if self._closing else "its owner task ended"
        self._fail_start(cause)  # no-op for the start if it already finished

    def _mark_dead(self, cause: str) -> None:
        if self._cause is None:
            self._cause = cause
        self._dead.set()
        self._wake.set()

    async def _drain_stderr(self) -> None:
        if self._stderr is not None:
            await self._stderr.drain(1.0)

    def _stderr_suffix(self) -> str:
        tail = self._stderr.text() if self._stderr is not None else ""
        return f"; stderr tail:\n{tail}" if tail else ""

    def _start_error(self, cause: str) -> ToolServerStartError:
        return ToolServerStartError(
            f"MCP server {self.name!r} could not start: {cause}{self._stderr_suffix()}"
        )

    def _fail_start(self, cause: str) -> None:
        self._mark_dead(cause)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(self._start_error(cause))
            self._ready.exception()  # retrieved here too: start() may have stopped waiting

    @property
    def alive(self) -> bool:
        """Connected, and the server has not gone away since."""
        return self._client is not None and not self._dead.is_set()

    def died_error(self) -> ToolServerDiedError:
        cause = self._cause or "the connection is closing"
        return ToolServerDiedError(
            f"MCP server {self.name!r} is gone: {cause}{self._stderr_suffix()}; "
            f"call reconnect({self.name!r}) to start it again"
        )

    # --- calls -------------------------------------------------------------------------------

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        timeout_s: float,
        *,
        meta: dict[str, Any] | None = None,
    ) -> mcp_types.CallToolResult:
        """Call one tool on the open session, racing the call against the connection's death;
        ``meta`` goes in the request's ``_meta``."""
        client = self._client
        if client is None or self._dead.is_set():
            raise self.died_error()
        call = asyncio.ensure_future(
            client.call_tool(
                tool,
                arguments,
                read_timeout_seconds=timeout_s,
                meta=cast("mcp_types.RequestParamsMeta", meta) if meta else None,
            )
        )
        died = asyncio.ensure_future(self._dead.wait())
        try:
            await asyncio.wait(
                {call, died},
                timeout=timeout_s + _TIMEOUT_SLACK_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            died.cancel()
            if not call.done():
                call.cancel()
                await asyncio.wait({call})
        if call.cancelled():
            if self._dead.is_set() or self._client is None:
                raise self.died_error()
            raise ToolTimeoutError(f"{self.name}.{tool} timed out after {timeout_s}s")
        exc = call.exception()
        if exc is None:
            return call.result()
        raise self._map_error(tool, exc, timeout_s) from exc

    async def relist_tools(self, timeout_s: float) -> list[mcp_types.Tool]:
        """List the tools again on the open session: a server may change them at any time."""
        client = self._client
        if client is None or self._dead.is_set():
            raise self.died_error()
        try:
            tools = await asyncio.wait_for(self._list_tools(client), timeout_s)
        except TimeoutError:
            raise ToolError(f"{self.name}: listing tools timed out after {timeout_s}s") from None
        except Exception as exc:
            raise self._map_error("tools/list", exc, timeout_s) from exc
        self.tools = tools
        return tools

    def _map_error(self, tool: str, exc: BaseException, timeout_s: float) -> Exception:
        where = f"{self.name}.{tool}"
        if isinstance(exc, MCPError):
            if exc.error.code == CONNECTION_CLOSED:
                self._mark_dead(_describe(exc))
                return self.died_error()
            if exc.error.code == REQUEST_TIMEOUT:
                return ToolTimeoutError(f"{where} timed out after {timeout_s}s")
            return ToolCallError(f"{where}: the server answered error {exc.error.code}: {exc}")
        if isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError | OSError):
            self._mark_dead(_describe(exc))
            return self.died_error()
        if self._dead.is_set() or self._client is None:
            return self.died_error()
        if isinstance(exc, RuntimeError):  # e.g. structured content that breaks the output schema
            return ToolCallError(f"{where}: {exc}")
        return ToolError(f"{where} failed: {_describe(exc)}")

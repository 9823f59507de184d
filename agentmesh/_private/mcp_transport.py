"""The two transports of an MCP connection: a (sandboxed) stdio child, or streamable HTTP.

Kept apart from :mod:`agentmesh._private.mcp_connection`, which owns the session, because
starting a server and watching its pipes is its own job: the child's argv (sandboxed or not),
its stderr kept as a short tail for error messages, and a read stream that reports when the
server goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TextIO

import anyio
import httpx2
from mcp import StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentmesh._private.sandbox_argv import sandboxed_argv

if TYPE_CHECKING:
    from mcp.client._transport import ReadStream, TransportStreams
    from mcp.shared.message import SessionMessage

    from agentmesh.protocols.mcp_config import HttpServer, StdioServer

__all__ = ["StderrTail", "WatchedReadStream", "http_transport", "stdio_transport"]

logger = logging.getLogger("agentmesh.mcp")

_STDERR_TAIL_LINES: Final = 20
_STDERR_TAIL_CHARS: Final = 4000
_HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, read=300.0)  # mcp's defaults for its own client


class StderrTail:
    """Collects a stdio server's stderr through a pipe, keeping only the last lines."""

    def __init__(self, server: str) -> None:
        read_fd, write_fd = os.pipe()
        self._read_file = os.fdopen(read_fd, "rb", buffering=0)
        self.write_file: TextIO = os.fdopen(write_fd, "w")  # handed to the child as its stderr
        self._server = server
        self._lines: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._partial = ""
        self._eof = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        tail = self

        class _Reader(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                tail._feed(data.decode("utf-8", errors="replace"))

            def connection_lost(self, exc: Exception | None) -> None:
                tail._eof.set()

        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(_Reader, self._read_file)

    def _feed(self, text: str) -> None:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            logger.debug("[%s stderr] %s", self._server, line)
            self._lines.append(line)
        self._partial = self._partial[-_STDERR_TAIL_CHARS:]

    def close_write_end(self) -> None:
        """Drop our copy of the pipe's write end, so the pipe ends when the server does."""
        self.write_file.close()

    async def drain(self, timeout_s: float) -> None:
        """Wait briefly for the server's last stderr output (after it has exited)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), timeout_s)

    def text(self) -> str:
        lines = [*self._lines, self._partial] if self._partial else list(self._lines)
        return "\n".join(lines).strip()[-_STDERR_TAIL_CHARS:]

    def close(self) -> None:
        self.close_write_end()
        if self._transport is not None:
            self._transport.close()
        else:
            self._read_file.close()


class WatchedReadStream:
    """Forwards the transport's read stream and reports when it ends: the server went away."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], on_end: Callable[[], None]):
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:  # the HTTP transport's per-message contextvars, if any
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> WatchedReadStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


@asynccontextmanager
async def stdio_transport(
    cfg: StdioServer, stderr: StderrTail, on_end: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    """Start the server (sandboxed unless it opted out), its stderr into ``stderr``."""
    if cfg.unsandboxed:
        params = StdioServerParameters(
            command=cfg.command[0], args=cfg.command[1:], env=dict(cfg.env) or None, cwd=cfg.cwd
        )
    else:
        argv, env = sandboxed_argv(
            cfg.command, cfg.sandbox, cwd=cfg.cwd, env=cfg.env, server=cfg.name
        )
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    try:
        async with stdio_client(params, errlog=stderr.write_file) as (read, write):
            stderr.close_write_end()  # the child holds its own copy now
            yield WatchedReadStream(read, on_end), write
    finally:
        stderr.close_write_end()


@asynccontextmanager
async def http_transport(
    cfg: HttpServer, on_end: Callable[[], None]
) -> AsyncIterator[TransportStreams]:
    """Connect to a running server over streamable HTTP."""
    async with (
        httpx2.AsyncClient(headers=dict(cfg.headers), timeout=_HTTP_TIMEOUT) as http,
        streamable_http_client(cfg.url, http_client=http) as (read, write),
    ):
        yield WatchedReadStream(read, on_end), write

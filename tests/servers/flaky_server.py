"""A tiny MCP stdio server for tests: echoes, fails, sleeps or crashes on request.

Run by path: ``python tests/servers/flaky_server.py``. It prints one line to stderr at start so
tests can check that the client captures a server's stderr.
"""

from __future__ import annotations

import os
import sys
import uuid

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server: MCPServer = MCPServer(name="flaky", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(message: str) -> str:
    """Always fail, so the result is an MCP tool error carrying the message."""
    raise ToolError(message)


@server.tool()
def die() -> str:
    """Exit the whole server process at once, as a crash mid-call would."""
    sys.stderr.write("flaky: dying on request\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def sleep(seconds: float) -> str:
    """Wait a while, so tests can kill the server or time out with a call in flight."""
    await anyio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool()
def big(size: int) -> str:
    """Return ``size`` bytes of text, to exceed a result bound."""
    return "x" * size


@server.tool(annotations=ToolAnnotations(idempotentHint=True))
def crash_once(marker: str) -> str:
    """Crash the first time (creating ``marker``), answer afterwards: safe to retry."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(3)
    return f"recovered in {os.getpid()}"


INSTANCE = uuid.uuid4().hex


@server.tool()
def instance() -> str:
    """A token unique to this server process (pids repeat inside pid namespaces)."""
    return INSTANCE


@server.tool()
def pid() -> int:
    """Return the server's process id, so tests can tell whether the session was reused."""
    return os.getpid()


if __name__ == "__main__":
    sys.stderr.write("flaky: starting\n")
    sys.stderr.flush()
    server.run()

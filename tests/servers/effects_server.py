"""An MCP stdio server for the durable-run tests: ``record`` appends a line to a log file.

The log (``$EFFECTS_LOG``) outlives the server and the mesh, so a test counts how often each
effect really happened, even across a killed driver; each line also keeps the idempotency key
the call carried in its ``_meta`` (empty when it carried none). Run by path:
``python tests/servers/effects_server.py``.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

KEY = "io.agentmesh/idempotency-key"
server: MCPServer = MCPServer(name="effects", log_level="WARNING")


@server.tool()
def record(entry: str, ctx: Context) -> str:
    """Append an entry to the effect log (a side effect: every call adds a line)."""
    meta = ctx.request_context.meta or {}
    line = json.dumps({"entry": entry, "key": str(meta.get(KEY, ""))})
    with open(os.environ["EFFECTS_LOG"], "a", encoding="utf-8") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())
    return f"recorded {entry}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def peek(entry: str, ctx: Context) -> str:
    """Read-only: say whether the call carried an idempotency key (it should not)."""
    meta = ctx.request_context.meta or {}
    return f"{entry}: key {'present' if KEY in meta else 'absent'}"


if __name__ == "__main__":
    server.run()

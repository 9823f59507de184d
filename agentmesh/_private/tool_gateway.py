"""The tool gateway: the one actor that holds the mesh's MCP sessions.

Agents never hold MCP sessions themselves, so the gateway is where every tool call is
enforced: the security actor approves the call (is the tool granted to this agent, do the
arguments try to exfiltrate?), the gateway makes it on the open session, and the security
actor vets the result before the agent sees it (prompt injection in tool output).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import JsonValue
from ray.actor import ActorHandle

from agentmesh._private.router import await_ray
from agentmesh.errors import ToolCallError
from agentmesh.protocols.mcp import McpClientPool, McpServerConfig, ToolInfo, ToolResult
from agentmesh.security import Decision, raise_for_decision

__all__ = ["ToolGateway"]


class ToolGateway:
    """Actor body: MCP client pool plus the security checks around each call."""

    def __init__(self, servers: Sequence[McpServerConfig], *, security: ActorHandle) -> None:
        self.pool = McpClientPool(servers)
        self.security = security

    async def start(self) -> list[ToolInfo]:
        """Connect every server once; the sessions stay open for the mesh's life."""
        await self.pool.start()
        return self.pool.tools()

    async def call(self, agent: str, tool: str, args: dict[str, JsonValue]) -> ToolResult:
        """Run ``tool`` for ``agent`` if the policy grants it; vet what it returns."""
        decision: Decision = await await_ray(
            self.security.vet_tool_call.remote(agent, tool, json.dumps(args, sort_keys=True)),
            what="security actor",
        )
        raise_for_decision(decision)
        result = await self.pool.call(tool, args)
        content = result.text
        if result.structured is not None:
            content += "\n" + json.dumps(result.structured)
        verdict: Decision = await await_ray(
            self.security.vet_tool_result.remote(agent, tool, content), what="security actor"
        )
        raise_for_decision(verdict)
        if result.is_error:
            raise ToolCallError(f"tool {tool!r} reported an error: {result.text}")
        return result

    async def reconnect(self, server: str) -> None:
        await self.pool.reconnect(server)

    async def close(self) -> None:
        await self.pool.close()

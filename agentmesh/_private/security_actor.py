"""The security actor: the security monitor and the tool gateway in one Ray actor.

Every message between agents is vetted here (by remote call from the sender's side), and every
tool call runs here: the actor owns the MCP sessions of the (sandboxed) tool servers, and its
node's agents reach it over a Unix socket (``tool_channel.py``), the checks done in-process.
The monitor's verdicts depend only on policy and input, so the mesh runs one such actor per
node (a pool), each with its own sessions and decision log, and its own audit log file
(``<audit_dir>/<writer>-<time>-<random>.jsonl`` on its node's disk; see ``agentmesh.audit``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import JsonValue
from ray.actor import ActorHandle

from agentmesh._private.decisions import Decision, QuarantineItem
from agentmesh._private.idempotency import CallKey
from agentmesh._private.limits import BreakerStatus
from agentmesh._private.policy_schema import Policy
from agentmesh._private.replay_tape import ReplayedTool
from agentmesh._private.tool_channel import ToolChannelServer
from agentmesh._private.tool_gateway import ToolGateway
from agentmesh._private.vet_batch import VetCall, run_batch
from agentmesh.audit import AuditHead, AuditLog
from agentmesh.errors import AgentMeshError, UnknownToolError
from agentmesh.grants import ToolGrant
from agentmesh.protocols.mcp import McpServerConfig, ToolInfo, ToolResult
from agentmesh.provenance import Label
from agentmesh.security import SecurityMonitor
from agentmesh.tools import ToolLimits

__all__ = ["SecurityActor"]


class SecurityActor:
    """Actor body; the mesh wraps it with ``ray.remote``."""

    def __init__(
        self,
        policy: Policy,
        *,
        servers: Sequence[McpServerConfig] = (),
        limits: ToolLimits | None = None,
        audit_dir: str | None = None,
        audit_key: bytes | None = None,
        audit_writer: str = "security",
    ) -> None:
        self.audit = (
            AuditLog.create(audit_dir, writer=audit_writer, key=audit_key) if audit_dir else None
        )
        self.monitor = SecurityMonitor(policy, audit=self.audit)
        self.channel: ToolChannelServer | None = None
        self.gateway = (
            ToolGateway(servers, monitor=self.monitor, limits=limits) if servers else None
        )

    # --- messages between agents -------------------------------------------------------------

    def vet_message(
        self,
        sender: str,
        recipient: str,
        skill: str,
        content: str,
        *,
        label: Label | None = None,
        context: str | None = None,
    ) -> Decision:
        return self.monitor.vet_message(
            sender, recipient, skill, content, label=label, context=context
        )

    def vet_reply(
        self, replier: str, recipient: str, skill: str, content: str, *, context: str | None = None
    ) -> Decision:
        return self.monitor.vet_reply(replier, recipient, skill, content, context=context)

    def vet_batch(self, calls: list[VetCall]) -> list[Decision | AgentMeshError]:
        """Several vets in one call, in order (see ``vet_batch.py``)."""
        return run_batch(self.monitor, calls)

    def set_remote_agents(self, names: list[str]) -> None:
        """Which mesh members are remote A2A agents (messages to them leave the mesh)."""
        self.monitor.set_remote_agents(names)

    def decisions(self, *, since: int = 0) -> list[Decision]:
        return self.monitor.decisions(since=since)

    def audit_head(self) -> AuditHead | None:
        return self.audit.head() if self.audit else None

    def quarantine(self) -> list[QuarantineItem]:
        return self.monitor.quarantine()

    def reset_breaker(self, agent: str) -> bool:
        return self.monitor.reset_breaker(agent)

    def breakers(self) -> list[BreakerStatus]:
        return self.monitor.breakers()

    # --- tools -------------------------------------------------------------------------------

    async def start_tools(self) -> tuple[list[ToolInfo], str | None]:
        """Connect every MCP server once (the sessions stay open for the mesh's life) and open
        the node-local socket its agents call tools on; return the tools and the socket path."""
        if self.gateway is None:
            return [], None
        tools = await self.gateway.start()
        self.channel = ToolChannelServer(self.call_tool)
        return tools, await self.channel.start()

    def set_ledger(self, ledger: ActorHandle) -> None:
        """The run ledger's actor: side-effecting calls made in runs are recorded there."""
        if self.gateway is not None:
            self.gateway.effects.handle = ledger

    def tools_for(self, agent: str) -> list[ToolInfo]:
        return self.gateway.tools_for(agent) if self.gateway else []

    async def call_tool(
        self,
        agent: str,
        tool: str,
        args: dict[str, JsonValue],
        *,
        grant: list[ToolGrant] | None = None,
        label: Label | None = None,
        approvals: Sequence[str] = (),
        context: str | None = None,
        idempotency: CallKey | None = None,
        replay: ReplayedTool | None = None,
    ) -> ToolResult:
        if self.gateway is None:
            raise UnknownToolError(f"tool {tool!r}: the mesh has no MCP servers configured")
        return await self.gateway.call(
            agent,
            tool,
            args,
            grant=grant,
            label=label,
            approvals=approvals,
            context=context,
            idempotency=idempotency,
            replay=replay,
        )

    async def close(self) -> None:
        try:
            if self.channel is not None:
                await self.channel.close()
            if self.gateway is not None:
                await self.gateway.close()
        finally:
            if self.audit is not None:
                self.audit.close()  # fsynced; a decision after this raises (fails closed)

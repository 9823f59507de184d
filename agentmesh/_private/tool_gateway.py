"""The tool gateway: the mesh's MCP sessions and the checks around every tool call.

It lives inside the security actor (see ``security_actor.py``), next to the security monitor,
so each check is a function call rather than another actor round trip. Agents never hold MCP
sessions themselves, so this is where every tool call is enforced: the monitor approves the
call (is the tool granted to this agent, do the arguments try to exfiltrate?), the arguments
are checked against the tool's schema and size bound, the call runs on the open session
(reconnecting a server that died), and the monitor vets the result before the agent sees it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Sequence
from typing import Any

import jsonschema
from pydantic import JsonValue

from agentmesh._private.decisions import raise_for_decision
from agentmesh._private.effect_ledger import EffectLedger, Meta
from agentmesh._private.grants import canonical, tool_label
from agentmesh._private.idempotency import CallKey
from agentmesh._private.policy_schema import Policy
from agentmesh._private.replay_tape import ReplayedTool
from agentmesh._private.sandbox import with_policy
from agentmesh._private.tool_vetting import PinStore, ToolAssessment
from agentmesh.errors import (
    ToolArgumentsError,
    ToolCallError,
    ToolNotApprovedError,
    ToolResultTooLargeError,
    ToolServerDiedError,
    ToolTimeoutError,
    UnknownToolError,
)
from agentmesh.grants import Effect, ToolGrant
from agentmesh.protocols.mcp import McpClientPool, McpServerConfig, ToolInfo, ToolResult
from agentmesh.provenance import Label, Trust
from agentmesh.security import SecurityMonitor
from agentmesh.tools import ToolLimits

__all__ = ["ToolGateway"]


def _idempotent(info: ToolInfo) -> bool:
    """A call may be repeated after a crash only if the server says the tool allows it."""
    hints = info.annotations or {}
    return any(
        hints.get(key) is True
        for key in ("idempotentHint", "readOnlyHint", "idempotent_hint", "read_only_hint")
    )


class ToolGateway:
    """MCP client pool plus the security checks around each call."""

    def __init__(
        self,
        servers: Sequence[McpServerConfig],
        *,
        monitor: SecurityMonitor,
        limits: ToolLimits | None = None,
    ) -> None:
        self.limits = limits or ToolLimits()
        self.pins = PinStore(self.limits.pins_path)
        self._assessed: dict[str, ToolAssessment] = {}
        self._malformed: dict[str, str] = {}
        self._listed_at: dict[str, float] = {}
        self.pool = McpClientPool(with_policy(servers, monitor.policy))  # effective sandboxes
        self.monitor = monitor
        self.policy: Policy = monitor.policy
        self._tools: dict[str, ToolInfo] = {}
        self._reconnecting: dict[str, asyncio.Lock] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self.effects = EffectLedger()

    async def start(self) -> list[ToolInfo]:
        """Connect every server once; the sessions stay open for the mesh's life."""
        await self.pool.start()
        self._listed_at = dict.fromkeys({t.server for t in self.pool.tools()}, time.monotonic())
        self._assess()
        return list(self._tools.values())

    def assessments(self) -> list[ToolAssessment]:
        """Each tool's standing: approved, new, changed since pinned (rug pull) or flagged."""
        return list(self._assessed.values())

    def tools_for(self, agent: str) -> list[ToolInfo]:
        """The approved tools the policy grants ``agent``: all it may see of the tool plane."""
        return [
            t
            for name, t in self._tools.items()
            if self._offered(name) and self.policy.tool_grant(agent, name)
        ]

    def _offered(self, name: str) -> bool:
        return name not in self._malformed and self._assessed[name].offered

    def _assess(self) -> None:
        """Pin check and poisoning scan of all listed tools at once (shadowing is cross-server).

        A tool whose input schema is not a valid JSON Schema is refused as malformed.
        """
        tools = self.pool.tools()
        self._malformed = {}
        for t in tools:
            try:
                jsonschema.Draft202012Validator.check_schema(dict(t.input_schema))
            except jsonschema.SchemaError as exc:
                self._malformed[t.qualified_name] = f"its input schema is invalid: {exc.message}"
        scanning = self.policy.scanning
        self._assessed = {
            a.qualified_name: a
            for a in self.pins.assess(
                tools,
                trust_on_first_use=self.limits.trust_on_first_use,
                threshold=scanning.threshold,
                disabled_rules=scanning.disabled_rules,
            )
        }
        self._tools = {t.qualified_name: t for t in tools}
        self._validators.clear()  # a definition may have changed

    async def call(
        self,
        agent: str,
        tool: str,
        args: dict[str, JsonValue],
        *,
        grant: Sequence[ToolGrant] | None = None,
        label: Label | None = None,
        approvals: Collection[str] = (),
        context: str | None = None,
        idempotency: CallKey | None = None,
        replay: ReplayedTool | None = None,
    ) -> ToolResult:
        """Run ``tool`` for ``agent`` if the policy and the plan node's ``grant`` allow it
        with the task's provenance ``label``; vet what it returns and label it. ``context``
        (the run) keys what the exfiltration copy check remembers. A side-effecting call
        with an ``idempotency`` key (made in a run) sends it to the server and is made once
        per key: the ledger's recorded result stands in for a repeat, vetted as a new one.
        In a replay, ``replay`` carries the recorded answer, checked and vetted the same way
        (see :mod:`agentmesh._private.replay_tape`)."""
        payload = canonical(args)
        if len(payload.encode()) > self.limits.max_argument_bytes:
            raise ToolArgumentsError(
                f"arguments for {tool!r} are {len(payload.encode())} bytes; the bound is "
                f"{self.limits.max_argument_bytes}"
            )
        decision = self.monitor.vet_tool_call(
            agent, tool, payload, grant=grant, label=label, approvals=approvals, context=context
        )
        raise_for_decision(decision)
        await self._relist_if_stale(tool.partition(".")[0])
        info = self._tools.get(tool)
        if info is None:
            raise UnknownToolError(
                f"no MCP server offers tool {tool!r}; known: {sorted(self._tools)}"
            )
        assessment = self._assessed[tool]
        if not assessment.offered:
            self._assess()  # re-read the pins: an approval from the CLI counts at once
            assessment = self._assessed[tool]
        assessment.raise_if_refused()
        if tool in self._malformed:
            raise ToolNotApprovedError(tool, status="malformed", reason=self._malformed[tool])
        self._check_arguments(info, args)
        side_effecting = tool_label(self.policy, tool).effect is not Effect.READ_ONLY
        recorded = replay.answer(side_effecting=side_effecting) if replay is not None else None
        result = recorded or await self.effects.once(
            tool,
            idempotency if side_effecting else None,
            lambda meta: self._call(info, args, meta=meta),
        )
        content = result.text
        if result.structured is not None:
            content += "\n" + json.dumps(result.structured)
        if len(content.encode()) > self.limits.max_result_bytes:
            raise ToolResultTooLargeError(
                f"tool {tool!r} returned {len(content.encode())} bytes; the bound is "
                f"{self.limits.max_result_bytes}: refused"
            )
        raise_for_decision(self.monitor.vet_tool_result(agent, tool, content, context=context))
        if result.is_error:
            raise ToolCallError(f"tool {tool!r} reported an error: {result.text}")
        trusted = tool_label(self.policy, tool).result_trust is Trust.TRUSTED
        result.label = Label.tool(tool, trusted=trusted)
        result.definition_hash = assessment.hash
        return result

    def _check_arguments(self, info: ToolInfo, args: dict[str, JsonValue]) -> None:
        validator = self._validators.get(info.qualified_name)
        if validator is None:  # compiled once per tool definition
            schema: dict[str, Any] = dict(info.input_schema)
            validator = self._validators[info.qualified_name] = jsonschema.Draft202012Validator(
                schema
            )
        problems = [
            f"{'.'.join(map(str, err.absolute_path)) or '(arguments)'}: {err.message}"
            for err in validator.iter_errors(args)
        ]
        if problems:
            raise ToolArgumentsError(
                f"bad arguments for {info.qualified_name}: {'; '.join(problems)}"
            )

    async def _call(
        self, info: ToolInfo, args: dict[str, JsonValue], *, meta: Meta | None = None
    ) -> ToolResult:
        """Call on a live session: reconnect a server found dead; retry only idempotent tools."""
        if not self.pool.alive(info.server):
            await self._reconnect(info.server)  # it died between calls: nothing was in flight
        try:
            return await self.pool.call(
                info.qualified_name, args, timeout_s=self.limits.call_timeout_s, meta=meta
            )
        except ToolTimeoutError:
            # The server may still be busy with it (a runaway tool keeps its CPU): restart it,
            # so the wall-time limit holds and the next call gets a fresh server.
            await self._restart(info.server)
            raise
        except ToolServerDiedError:
            await self._reconnect(info.server)
            if not _idempotent(info):
                raise  # the call may have had effects: the caller decides
            return await self.pool.call(
                info.qualified_name, args, timeout_s=self.limits.call_timeout_s, meta=meta
            )

    async def _relist_if_stale(self, server: str) -> None:
        """Re-list a server's tools when its listing is older than the configured interval."""
        now = time.monotonic()
        if server not in self._listed_at or not self.pool.alive(server):
            return  # unknown servers fail below; dead ones are re-listed on reconnect
        if now - self._listed_at[server] < self.limits.relist_interval_s:
            return
        self._listed_at[server] = now
        await self.pool.refresh(server)
        self._assess()

    async def _reconnect(self, server: str, *, even_if_alive: bool = False) -> None:
        lock = self._reconnecting.setdefault(server, asyncio.Lock())
        async with lock:  # concurrent callers share one reconnect
            if even_if_alive or not self.pool.alive(server):
                await self.pool.reconnect(server)
                self._listed_at[server] = time.monotonic()
                self._assess()  # a restarted server is where a rug pull shows up

    async def _restart(self, server: str) -> None:
        await self._reconnect(server, even_if_alive=True)

    async def close(self) -> None:
        await self.pool.close()

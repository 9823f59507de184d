"""The node-local tool socket between agents and their security actor (no Ray needed)."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest
from pydantic import JsonValue

from agentmesh import RunError, ToolArgumentsError, ToolResult
from agentmesh._private.tool_channel import ToolChannelClient, ToolChannelServer


def result(text: str) -> ToolResult:
    return ToolResult(server="s", tool="t", is_error=False, text=text, duration_s=0.0)


async def test_calls_are_concurrent_typed_and_private() -> None:
    released = asyncio.Event()

    async def call(agent: str, tool: str, args: dict[str, JsonValue]) -> ToolResult:
        if tool == "wait":  # finishes only after a later call ran: proves no serialisation
            await released.wait()
            return result(f"{agent} waited")
        if tool == "release":
            released.set()
            return result("released")
        raise ToolArgumentsError(f"bad arguments for {tool}: {args}")

    server = ToolChannelServer(call)
    path = await server.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        client = ToolChannelClient(path)
        first = asyncio.ensure_future(client.call("researcher", "wait", {}))
        second = await asyncio.wait_for(client.call("researcher", "release", {}), 10)
        assert second.text == "released"
        assert (await asyncio.wait_for(first, 10)).text == "researcher waited"
        with pytest.raises(ToolArgumentsError, match="bad arguments for other"):
            await client.call("researcher", "other", {"x": 1})
    finally:
        await server.close()
    assert not os.path.exists(path)


async def test_a_lost_security_actor_fails_calls_in_flight() -> None:
    never = asyncio.Event()

    async def call(agent: str, tool: str, args: dict[str, JsonValue]) -> ToolResult:
        await never.wait()
        return result("unreachable")

    server = ToolChannelServer(call)
    client = ToolChannelClient(await server.start())
    pending = asyncio.ensure_future(client.call("a", "t", {}))
    await asyncio.sleep(0.1)  # let the request reach the server
    await server.close()
    with pytest.raises(RunError, match="lost"):
        await asyncio.wait_for(pending, 10)

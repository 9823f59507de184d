"""The tool plane through the mesh: grants, schemas, bounds, crashes and recovery."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agentmesh import (
    Mesh,
    ToolArgumentsError,
    ToolLimits,
    ToolResultTooLargeError,
    ToolServerDiedError,
    ToolTimeoutError,
)

from .mesh_agents import DOCS, FLAKY, POLICY, Tooler

FLAKY_DIR = Path("/tmp/agentmesh-test-flaky")  # granted writable to "flaky" by the test policy


async def test_each_agent_sees_only_granted_tools(mesh: Mesh) -> None:
    assert await mesh.call("echo", "visible") == []
    visible = await mesh.call("tooler", "visible")
    assert isinstance(visible, list)
    assert {"docs.search_docs", "docs.read_doc", "flaky.echo"} <= set(visible)
    assert "docs.word_count" not in visible  # the test policy does not grant it


async def test_arguments_checked_against_schema_and_bound(mesh: Mesh) -> None:
    with pytest.raises(ToolArgumentsError, match="is not of type 'string'"):
        await mesh.call("tooler", "call_tool", tool="flaky.echo", args={"text": 5})
    with pytest.raises(ToolArgumentsError, match="'text' is a required property"):
        await mesh.call("tooler", "call_tool", tool="flaky.echo", args={})
    with pytest.raises(ToolArgumentsError, match="the bound is 64000"):
        await mesh.call("tooler", "call_tool", tool="flaky.echo", args={"text": "x" * 70_000})
    # the session is unharmed
    assert await mesh.call("tooler", "call_tool", tool="flaky.echo", args={"text": "ok"}) == "ok"


async def test_oversized_result_is_refused(ray_session: None) -> None:
    limits = ToolLimits(max_result_bytes=10_000)
    async with Mesh([Tooler], tools=[FLAKY, DOCS], policy=POLICY, tool_limits=limits) as mesh:
        with pytest.raises(ToolResultTooLargeError, match="the bound is 10000"):
            await mesh.call("tooler", "call_tool", tool="flaky.big", args={"size": 20_000})
        small = await mesh.call("tooler", "call_tool", tool="flaky.big", args={"size": 10})
        assert small == "x" * 10


async def test_crash_in_flight_retries_idempotent_tools_only(ray_session: None) -> None:
    async with Mesh([Tooler], tools=[FLAKY, DOCS], policy=POLICY) as mesh:
        first = await mesh.call("tooler", "call_tool", tool="flaky.instance", args={})
        # not idempotent: the call fails typed; the server is back for the next call
        with pytest.raises(ToolServerDiedError):
            await mesh.call("tooler", "call_tool", tool="flaky.die", args={})
        second = await mesh.call("tooler", "call_tool", tool="flaky.instance", args={})
        assert second != first
        # idempotent: the crash is absorbed by one retry on the restarted server
        marker = str(FLAKY_DIR / f"crash-{uuid.uuid4().hex}")
        answer = await mesh.call(
            "tooler", "call_tool", tool="flaky.crash_once", args={"marker": marker}
        )
        assert isinstance(answer, str) and answer.startswith("recovered in ")
        assert Path(marker).exists()
        third = await mesh.call("tooler", "call_tool", tool="flaky.instance", args={})
        assert third != second  # the crash restarted the server once more


async def test_timed_out_call_restarts_its_server(ray_session: None) -> None:
    limits = ToolLimits(call_timeout_s=1.0)
    async with Mesh([Tooler], tools=[FLAKY, DOCS], policy=POLICY, tool_limits=limits) as mesh:
        before = await mesh.call("tooler", "call_tool", tool="flaky.instance", args={})
        with pytest.raises(ToolTimeoutError, match=r"timed out after 1\.0s"):
            await mesh.call("tooler", "call_tool", tool="flaky.sleep", args={"seconds": 30})
        after = await mesh.call("tooler", "call_tool", tool="flaky.instance", args={})
        assert after != before  # the stuck server was replaced, not left running

"""The mesh end to end on real Ray: skills over A2A, the security actor, MCP tools, models."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import ray
from a2a.types import AgentCard

from agentmesh import (
    AgentUnavailableError,
    ContentQuarantined,
    LlamaCppModel,
    Mesh,
    MessageBlocked,
    ModelError,
    ModelNotFoundError,
    SkillFailedError,
    SkillInputError,
    StdioServer,
    ToolCallBlocked,
    ToolCallError,
    ToolServerDiedError,
    ToolServerStartError,
    UnknownAgentError,
    UnknownModelError,
    UnknownSkillError,
    UnknownToolError,
)

from .mesh_agents import DOCS, FLAKY, INJECTION, POLICY, Echo, Left, Tooler


async def test_cards_are_a2a_agent_cards(mesh: Mesh) -> None:
    cards = {card.name: card for card in mesh.cards()}
    assert set(cards) == {"echo", "left", "right", "tooler", "joiner", "tasker"}
    assert isinstance(cards["echo"], AgentCard)
    assert {s.id for s in cards["echo"].skills} >= {"echo", "fail", "forward"}
    assert {t.qualified_name for t in mesh.tools()} >= {"docs.search_docs", "flaky.echo"}


async def test_call_returns_result_and_records_decisions(mesh: Mesh) -> None:
    before = len(await mesh.decisions())
    assert await mesh.call("echo", "echo", text="hi", times=2) == "hi hi"
    new = (await mesh.decisions())[before:]
    assert [(d.kind, d.principal, d.target, d.verdict) for d in new] == [
        ("message", "user", "echo.echo", "allow"),
        ("reply", "echo", "echo.echo", "allow"),
    ]


async def test_unknown_agent_skill_and_bad_arguments(mesh: Mesh) -> None:
    with pytest.raises(UnknownAgentError, match="nobody"):
        await mesh.call("nobody", "echo", text="x")
    with pytest.raises(UnknownSkillError, match="'nope'"):
        await mesh.call("echo", "nope")
    with pytest.raises(SkillInputError) as info:
        await mesh.call("echo", "echo", text="x", times="many")
    assert any(e.startswith("times:") for e in info.value.errors)
    with pytest.raises(SkillInputError, match="text"):
        await mesh.call("echo", "echo")


async def test_skill_exception_comes_back_typed(mesh: Mesh) -> None:
    with pytest.raises(SkillFailedError) as info:
        await mesh.call("echo", "fail", message="boom")
    assert info.value.error_type == "ValueError" and info.value.detail == "boom"


async def test_agent_to_agent_message_allowed_and_forbidden(mesh: Mesh) -> None:
    assert await mesh.call("echo", "forward", agent="left", skill="echo", text="yo") == "yo"
    with pytest.raises(MessageBlocked) as info:
        await mesh.call("echo", "forward", agent="right", skill="echo", text="yo")
    decision = info.value.decision
    assert (decision.principal, decision.target, decision.verdict) == (
        "echo",
        "right.echo",
        "block",
    )
    assert (await mesh.decisions())[-1].seq == decision.seq


async def test_injection_in_a_reply_is_quarantined_not_lost(mesh: Mesh) -> None:
    with pytest.raises(ContentQuarantined) as info:
        await mesh.call("echo", "inject")
    assert "previous instructions" not in str(info.value).lower()  # the error quotes no attack
    qid = info.value.decision.quarantine_id
    held = {item.id: item for item in await mesh.quarantine()}
    assert INJECTION in held[qid].content


async def test_injection_in_a_message_is_blocked(mesh: Mesh) -> None:
    with pytest.raises(MessageBlocked):
        await mesh.call("echo", "echo", text=INJECTION)


async def test_tools_granted_denied_and_vetted(mesh: Mesh) -> None:
    assert (
        await mesh.call("tooler", "call_tool", tool="flaky.echo", args={"text": "ping"}) == "ping"
    )
    with pytest.raises(ToolCallBlocked) as info:
        await mesh.call("echo", "use", tool="flaky.echo")
    assert info.value.decision.target == "flaky.echo"
    with pytest.raises(UnknownToolError):
        await mesh.call("tooler", "call_tool", tool="flaky.nothing", args={})
    with pytest.raises(ToolCallError, match="went wrong"):
        await mesh.call("tooler", "call_tool", tool="flaky.fail", args={"message": "went wrong"})
    with pytest.raises(ContentQuarantined):
        await mesh.call(
            "tooler", "call_tool", tool="docs.read_doc", args={"doc_id": "edge-vendor-notes"}
        )


async def test_scripted_model_through_the_mesh(mesh: Mesh) -> None:
    assert await mesh.call("echo", "think", prompt="hello?") == "a scripted answer"
    with pytest.raises(ModelError, match="model broke"):
        await mesh.call("echo", "think", prompt="again")
    handle = mesh.model_handle("scripted")
    calls = await handle.calls.remote()
    assert [c.prompt for c in calls] == ["hello?", "again"]
    await handle.assert_consumed.remote()


async def test_bad_mesh_configurations(ray_session: None, tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        Mesh([Echo], policy=POLICY)  # Echo uses model "scripted", none configured
    with pytest.raises(ModelNotFoundError, match=r"missing\.gguf"):
        await Mesh(
            [Left], models={"m": LlamaCppModel(path="/nonexistent/missing.gguf")}, policy=POLICY
        ).start()
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match="failed to load"):
        await Mesh([Left], models={"m": LlamaCppModel(path=str(corrupt))}, policy=POLICY).start()
    bad = StdioServer(name="broken", command=[sys.executable, "-c", "import sys; sys.exit(2)"])
    with pytest.raises(ToolServerStartError, match="broken"):
        await Mesh([Left], tools=[bad], policy=POLICY).start()
    with pytest.raises(UnknownToolError, match="docs"):
        await Mesh([Tooler], tools=[FLAKY], policy=POLICY).start()


async def test_dead_agent_and_dead_tool_server(ray_session: None) -> None:
    async with Mesh([Left, Tooler], tools=[FLAKY, DOCS], policy=POLICY) as m:
        ray.kill(m.agent_handle("left"))
        with pytest.raises(AgentUnavailableError):
            await m.call("left", "echo", text="x")
        with pytest.raises(ToolServerDiedError):
            await m.call("tooler", "call_tool", tool="flaky.die", args={})
        # the gateway restarts the dead server for the next call
        reply = await asyncio.wait_for(
            m.call("tooler", "call_tool", tool="flaky.echo", args={"text": "back"}), 30
        )
        assert reply == "back"
        # the other server is unaffected
        assert "Ray" in await m.call(
            "tooler", "call_tool", tool="docs.read_doc", args={"doc_id": "ray-clusters"}
        )

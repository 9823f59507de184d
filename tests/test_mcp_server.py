"""The mesh as an MCP server: in-process, over real stdio (the CLI) and over streamable HTTP.

No mocks: an MCP client drives the session's mesh of test agents, a subprocess running
`agentmesh serve --mcp` (its own Ray, the demo mesh, the bundled llama model), and a real
streamable HTTP endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import mcp_types
import pytest
from google.protobuf import json_format
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from agentmesh import Agent, ConfigError, Mesh, Resources, skill
from agentmesh.mcp_server import AGENT_URI_PREFIX, build_mcp_server, serve_mcp

from .mesh_agents import INJECTION

AGENTMESH = str(Path(sys.executable).parent / "agentmesh")


def _text(result: mcp_types.CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


# --- in-process --------------------------------------------------------------------------------


async def test_every_skill_is_a_tool_with_its_schemas(mesh: Mesh) -> None:
    async with Client(build_mcp_server(mesh)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    catalog = {f"{s.agent}.{s.skill}": s for s in mesh.catalog()}
    assert set(tools) == set(catalog)
    for name, info in catalog.items():
        assert tools[name].description == info.description
        assert tools[name].input_schema == info.input_schema
    # a str output is wrapped as {"result": ...}; a model's object schema is passed as it is
    assert tools["echo.echo"].output_schema == {
        "type": "object",
        "properties": {"result": {"type": "string"}},
        "required": ["result"],
    }
    assert tools["left.sleep"].output_schema == catalog["left.sleep"].output_schema
    assert tools["left.sleep"].output_schema["type"] == "object"


async def test_call_returns_structured_content_and_json_text(mesh: Mesh) -> None:
    async with Client(build_mcp_server(mesh)) as client:
        echoed = await client.call_tool("echo.echo", {"text": "hi", "times": 2})
        # an object result; the client also validates it against the tool's output schema
        slept = await client.call_tool("left.sleep", {"seconds": 0})
    assert not echoed.is_error
    assert echoed.structured_content == {"result": "hi hi"}
    assert json.loads(_text(echoed)) == {"result": "hi hi"}
    assert not slept.is_error
    assert isinstance(slept.structured_content, dict)
    assert set(slept.structured_content) == {"start", "end"}
    assert slept.structured_content["end"] >= slept.structured_content["start"]
    assert json.loads(_text(slept)) == slept.structured_content


async def test_errors_are_tool_errors_and_the_server_keeps_serving(mesh: Mesh) -> None:
    async with Client(build_mcp_server(mesh)) as client:
        failed = await client.call_tool("echo.fail", {"message": "boom"})
        bad_type = await client.call_tool("echo.echo", {"text": 3})
        missing = await client.call_tool("echo.echo", {})
        extra = await client.call_tool("echo.echo", {"text": "a", "loud": True})
        no_skill = await client.call_tool("echo.nope", {})
        no_agent = await client.call_tool("nobody.echo", {})
        after = await client.call_tool("echo.echo", {"text": "still here"})
    assert failed.is_error
    assert _text(failed) == "SkillFailedError: echo.fail failed with ValueError: boom"
    for result in (bad_type, missing, extra):
        assert result.is_error
        assert _text(result).startswith("SkillInputError: bad arguments for echo.echo: ")
    assert "text" in _text(bad_type)
    assert no_skill.is_error
    assert _text(no_skill).startswith("UnknownSkillError: agent 'echo' has no skill 'nope'")
    assert no_agent.is_error
    assert _text(no_agent).startswith("UnknownAgentError: unknown agent 'nobody'")
    assert not after.is_error
    assert after.structured_content == {"result": "still here"}


async def test_security_denials_name_the_rule_not_the_content(mesh: Mesh) -> None:
    async with Client(build_mcp_server(mesh)) as client:
        quarantined = await client.call_tool("echo.inject", {})
        blocked = await client.call_tool("echo.echo", {"text": INJECTION})
    decisions = await mesh.decisions()
    held = next(d for d in reversed(decisions) if d.verdict == "quarantine")
    assert quarantined.is_error
    text = _text(quarantined)
    assert text.startswith("ContentQuarantined: refused by the security actor")
    assert f"rule {held.rule!r}" in text
    assert held.quarantine_id is not None
    assert held.quarantine_id in text
    assert blocked.is_error
    assert _text(blocked).startswith("MessageBlocked: refused by the security actor")
    for result in (quarantined, blocked):
        lowered = _text(result).lower()
        assert "previous instructions" not in lowered
        assert "system prompt" not in lowered
        assert result.structured_content is None


async def test_agent_cards_are_resources(mesh: Mesh) -> None:
    async with Client(build_mcp_server(mesh)) as client:
        listed = (await client.list_resources()).resources
        read = await client.read_resource(AGENT_URI_PREFIX + "echo")
        with pytest.raises(MCPError) as info:
            await client.read_resource(AGENT_URI_PREFIX + "nobody")
        with pytest.raises(MCPError):
            await client.read_resource("file:///etc/passwd")
    cards = {card.name: card for card in mesh.cards()}
    assert {str(r.uri) for r in listed} == {AGENT_URI_PREFIX + name for name in cards}
    assert all(r.mime_type == "application/json" for r in listed)
    (contents,) = read.contents
    assert isinstance(contents, mcp_types.TextResourceContents)
    assert contents.mime_type == "application/json"
    assert json.loads(contents.text) == json_format.MessageToDict(cards["echo"])
    assert info.value.code == mcp_types.INVALID_PARAMS


class Oddly(Agent):
    """Has a skill whose name no MCP tool may have."""

    name = "oddly"
    resources = Resources(num_cpus=0)

    @skill(name="say hi")
    def say_hi(self) -> str:
        """Say hi."""
        return "hi"


async def test_a_mesh_that_cannot_be_served(ray_session: None) -> None:
    with pytest.raises(ConfigError, match="not started"):
        build_mcp_server(Mesh([Oddly]))
    async with Mesh([Oddly]) as odd:
        with pytest.raises(ConfigError, match=re.escape("'oddly.say hi' cannot be an MCP tool")):
            build_mcp_server(odd)


# --- streamable HTTP ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_listening(port: int, task: asyncio.Task[None]) -> None:
    for _ in range(200):
        if task.done():
            task.result()  # raises what stopped it
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"nothing listens on port {port}")


async def test_streamable_http_until_cancelled(mesh: Mesh) -> None:
    port = _free_port()
    task = asyncio.create_task(serve_mcp(mesh, transport="http", port=port))
    try:
        await _wait_listening(port, task)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("echo.echo", {"text": "over http"})
        # loopback by default: a request naming another host is refused (DNS rebinding)
        async with httpx.AsyncClient() as http:
            foreign = await http.post(
                f"http://127.0.0.1:{port}/mcp",
                headers={"Host": "attacker.example", "Content-Type": "application/json"},
                content=b"{}",
            )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert result.structured_content == {"result": "over http"}
    assert foreign.status_code == 421  # Misdirected Request: "Invalid Host header"
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_http_port_in_use_is_a_config_error(mesh: Mesh) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match=re.escape("cannot serve MCP on 127.0.0.1:")):
            await serve_mcp(mesh, transport="http", port=taken.getsockname()[1])


# --- the CLI over real stdio -------------------------------------------------------------------


def _live_in_session(sid: int) -> list[str]:
    """Processes of a session that are still running (zombies wait for init to reap them)."""
    ps = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "--sid", str(sid)], capture_output=True, text=True
    )
    return [line for line in ps.stdout.splitlines() if line.split()[1][0] != "Z"]


@pytest.mark.llama
async def test_cli_serves_the_demo_mesh_over_stdio(tmp_path: Path) -> None:
    """`agentmesh serve --mcp` starts its own Ray and the demo mesh; stdout carries only frames."""
    pytest.importorskip("llama_cpp")
    transport_errors: list[Exception] = []

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, Exception):  # a stdout line that is not a JSON-RPC frame
            transport_errors.append(message)

    # RAY_ADDRESS=local: a new local Ray, never one found through /tmp/ray/ray_current_cluster
    params = StdioServerParameters(
        command=AGENTMESH, args=["serve", "--mcp"], env={"RAY_ADDRESS": "local"}, cwd=tmp_path
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        # mode="legacy": the initialize handshake most IDEs still speak
        client = Client(
            stdio_client(params, errlog=log),
            mode="legacy",
            message_handler=on_message,
            read_timeout_seconds=180,
        )
        async with asyncio.timeout(300), client:
            tools = {t.name for t in (await client.list_tools()).tools}
            outline = await client.call_tool("analyst.outline", {"topic": "edge", "sections": 2})
            card = await client.read_resource(AGENT_URI_PREFIX + "writer")
    stderr = log_path.read_text()
    assert {"researcher.gather", "analyst.outline", "analyst.review", "writer.compose"} <= tools
    assert not outline.is_error, _text(outline)
    assert outline.structured_content == {"result": ["Context: edge", "How it works: edge"]}
    contents = card.contents[0]
    assert isinstance(contents, mcp_types.TextResourceContents)
    assert json.loads(contents.text)["name"] == "writer"
    assert transport_errors == []
    # closing stdin stops the mesh; nothing of the server's session (its Ray) is left running
    serving = re.search(r"agentmesh serve: serving .* over MCP stdio \(pid (\d+)\)", stderr)
    assert serving, stderr[-3000:]
    assert "agentmesh serve: stdin closed; stopping the mesh" in stderr
    for _ in range(100):
        if not (left := _live_in_session(int(serving.group(1)))):
            break
        await asyncio.sleep(0.1)
    assert left == []


def test_serve_needs_exactly_one_protocol() -> None:
    for args in ([], ["--mcp", "--a2a"]):
        done = subprocess.run(
            [AGENTMESH, "serve", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2
        assert "choose one" in done.stderr
        assert done.stdout == ""


@pytest.mark.llama
def test_serve_reports_a_mesh_that_fails_to_start(tmp_path: Path) -> None:
    """A start failure is one line on stderr and exit code 1; stdout stays empty for MCP."""
    pytest.importorskip("llama_cpp")
    missing = tmp_path / "missing.gguf"
    done = subprocess.run(
        [AGENTMESH, "serve", "--mcp", "--model-path", str(missing)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RAY_ADDRESS": "local"},
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stdout == ""
    assert f"agentmesh serve: ModelNotFoundError: model file '{missing}'" in done.stderr
    assert "╭" not in done.stderr  # no rich traceback panel

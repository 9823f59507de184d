"""The MCP tool plane against real servers: stdio child processes and one streamable HTTP server.

No mocks: every test talks to examples/docs_server.py or tests/servers/flaky_server.py over a
real transport. No Ray either: the pool is plain asyncio.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import TypeAdapter, ValidationError

from agentmesh.errors import (
    ConfigError,
    ToolError,
    ToolServerDiedError,
    ToolServerStartError,
    UnknownToolError,
)
from agentmesh.examples.docs_server import DOC_IDS, INJECTED_DOC_ID
from agentmesh.protocols.mcp import (
    HttpServer,
    McpClientPool,
    McpServerConfig,
    StdioServer,
    ToolResult,
)

PY = sys.executable
FLAKY = str(Path(__file__).parent / "servers" / "flaky_server.py")


def docs_server(name: str = "docs") -> StdioServer:
    return StdioServer(name=name, command=[PY, "-m", "agentmesh.examples.docs_server"])


def flaky_server(name: str = "flaky", *, host_pids: bool = False) -> StdioServer:
    """The flaky test server; ``host_pids`` runs it unsandboxed, for tests that kill or watch
    its process from here (inside the sandbox's pid namespace its pid means nothing here)."""
    return StdioServer(name=name, command=[PY, FLAKY], unsandboxed=host_pids)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def server_pid(pool: McpClientPool, server: str = "flaky") -> int:
    result = await pool.call(f"{server}.pid", {})
    assert isinstance(result.structured, dict)
    pid = result.structured["result"]
    assert isinstance(pid, int)
    return pid


@pytest_asyncio.fixture(scope="module")
async def pool() -> AsyncIterator[McpClientPool]:
    """One pool for the read-only tests; tests that kill servers make their own."""
    async with McpClientPool([docs_server(), flaky_server()]) as started:
        yield started


# --- configuration ---------------------------------------------------------------------------


def test_duplicate_server_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="docs"):
        McpClientPool([docs_server("docs"), flaky_server("docs")])


@pytest.mark.parametrize("name", ["", "a.b", "has space", "slash/"])
def test_server_names_that_cannot_prefix_tools_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        StdioServer(name=name, command=[PY])


def test_config_is_discriminated_by_transport() -> None:
    adapter: TypeAdapter[StdioServer | HttpServer] = TypeAdapter(McpServerConfig)
    http = adapter.validate_python({"transport": "http", "name": "h", "url": "http://x/mcp"})
    stdio = adapter.validate_python({"transport": "stdio", "name": "s", "command": ["prog"]})
    assert isinstance(http, HttpServer)
    assert isinstance(stdio, StdioServer)
    assert stdio.start_timeout_s == 30


# --- one shared pool ---------------------------------------------------------------------------


async def test_tools_are_listed_with_qualified_names_and_schemas(pool: McpClientPool) -> None:
    tools = {t.qualified_name: t for t in pool.tools()}
    assert set(tools) == {
        "docs.search_docs",
        "docs.read_doc",
        "docs.word_count",
        "flaky.echo",
        "flaky.fail",
        "flaky.die",
        "flaky.sleep",
        "flaky.pid",
        "flaky.big",
        "flaky.crash_once",
        "flaky.instance",
    }
    search = tools["docs.search_docs"]
    assert (search.server, search.name) == ("docs", "search_docs")
    assert "keyword" in search.description
    assert search.input_schema["required"] == ["query"]
    properties = search.input_schema["properties"]
    assert isinstance(properties, dict)
    assert set(properties) == {"query", "limit"}
    assert search.output_schema is not None
    assert "DocHit" in str(search.output_schema)


async def test_successful_call_returns_structured_content(pool: McpClientPool) -> None:
    result = await pool.call("docs.search_docs", {"query": "running agents at the edge"})
    assert isinstance(result, ToolResult)
    assert (result.server, result.tool, result.is_error) == ("docs", "search_docs", False)
    assert isinstance(result.structured, dict)
    hits = result.structured["result"]
    assert isinstance(hits, list) and len(hits) == 3
    ids = [hit["doc_id"] for hit in hits if isinstance(hit, dict)]
    assert INJECTED_DOC_ID in ids
    assert set(ids) <= set(DOC_IDS)
    assert INJECTED_DOC_ID in result.text
    assert result.duration_s > 0

    count = await pool.call("docs.word_count", {"text": "one two three four"})
    assert count.structured == {"result": 4}
    assert count.text == "4"


async def test_injected_document_carries_the_planted_instruction(pool: McpClientPool) -> None:
    result = await pool.call("docs.read_doc", {"doc_id": INJECTED_DOC_ID})
    assert not result.is_error
    assert "IGNORE ALL PREVIOUS INSTRUCTIONS" in result.text


async def test_session_is_reused_across_calls(pool: McpClientPool) -> None:
    first = await server_pid(pool)
    assert first != os.getpid()
    pids = [await server_pid(pool) for _ in range(20)]
    assert set(pids) == {first}
    echoes = await asyncio.gather(*(pool.call("flaky.echo", {"text": f"m{i}"}) for i in range(20)))
    assert [e.text for e in echoes] == [f"m{i}" for i in range(20)]
    assert await server_pid(pool) == first


async def test_tool_error_is_a_result_not_an_exception(pool: McpClientPool) -> None:
    result = await pool.call("flaky.fail", {"message": "boom-4711"})
    assert result.is_error
    assert "boom-4711" in result.text
    missing = await pool.call("docs.read_doc", {"doc_id": "no-such-doc"})
    assert missing.is_error
    assert "no-such-doc" in missing.text
    # The session survives a tool error.
    assert (await pool.call("flaky.echo", {"text": "still here"})).text == "still here"


@pytest.mark.parametrize("name", ["docs.nope", "nosuchserver.echo", "echo", ""])
async def test_unknown_tool_names_what_exists(pool: McpClientPool, name: str) -> None:
    with pytest.raises(UnknownToolError) as info:
        await pool.call(name, {})
    assert "docs.search_docs" in str(info.value)
    assert "flaky.echo" in str(info.value)


async def test_call_timeout_is_a_tool_error_and_the_session_survives(pool: McpClientPool) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError) as info:
        await pool.call("flaky.sleep", {"seconds": 10}, timeout_s=0.5)
    assert not isinstance(info.value, ToolServerDiedError)
    assert time.monotonic() - started < 3
    assert (await pool.call("flaky.echo", {"text": "ok"})).text == "ok"


# --- servers that cannot start ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["/nonexistent/mcp-server-binary"], "No such file"),
        ([PY, "-c", "import sys; sys.exit(2)"], "connection closed"),
        (
            [PY, "-c", "import sys; print('not-json'); print('bad-start', file=sys.stderr)"],
            "bad-start",
        ),
    ],
    ids=["missing-program", "exits-at-once", "garbage-then-exit"],
)
async def test_server_that_cannot_start_fails_promptly(command: list[str], expected: str) -> None:
    pool = McpClientPool([StdioServer(name="broken", command=command, start_timeout_s=10)])
    started = time.monotonic()
    with pytest.raises(ToolServerStartError) as info:
        await pool.start()
    assert time.monotonic() - started < 5
    assert "'broken'" in str(info.value)
    assert expected in str(info.value)
    with pytest.raises(ToolError):  # not started: calls are refused, not hung
        await pool.call("broken.anything", {})


async def test_http_server_that_is_not_listening_fails_promptly() -> None:
    url = f"http://127.0.0.1:{_free_port()}/mcp"
    pool = McpClientPool([HttpServer(name="nobody", url=url, start_timeout_s=10)])
    started = time.monotonic()
    with pytest.raises(ToolServerStartError, match="'nobody'"):
        await pool.start()
    assert time.monotonic() - started < 5


async def test_server_without_handshake_times_out_with_its_stderr() -> None:
    hang = [
        PY,
        "-c",
        "import sys, time; print('hung-here', file=sys.stderr, flush=True); time.sleep(60)",
    ]
    pool = McpClientPool(
        [flaky_server(), StdioServer(name="hang", command=hang, start_timeout_s=1)]
    )
    started = time.monotonic()
    with pytest.raises(ToolServerStartError) as info:
        await pool.start()
    # 1 s of start timeout, then mcp's stdio shutdown waits 2 s before it kills the process.
    assert time.monotonic() - started < 8
    message = str(info.value)
    assert "'hang'" in message and "1.0s" in message and "hung-here" in message


# --- servers that die ----------------------------------------------------------------------------


async def test_server_dying_mid_call_fails_fast_until_reconnect() -> None:
    async with McpClientPool([flaky_server(host_pids=True)]) as pool:
        old_pid = await server_pid(pool)
        started = time.monotonic()
        with pytest.raises(ToolServerDiedError) as info:
            await pool.call("flaky.die", {})
        assert time.monotonic() - started < 2
        assert "'flaky'" in str(info.value)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ToolServerDiedError):
                await pool.call("flaky.echo", {"text": "hello"})
            assert time.monotonic() - started < 0.5
        assert await wait_gone(old_pid)

        await pool.reconnect("flaky")
        assert (await pool.call("flaky.echo", {"text": "back"})).text == "back"
        assert await server_pid(pool) != old_pid
        assert "flaky.echo" in {t.qualified_name for t in pool.tools()}


async def test_killed_server_fails_the_call_in_flight() -> None:
    async with McpClientPool([flaky_server(host_pids=True)]) as pool:
        pid = await server_pid(pool)
        in_flight = asyncio.create_task(pool.call("flaky.sleep", {"seconds": 30}))
        await asyncio.sleep(0.3)
        assert not in_flight.done()
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(ToolServerDiedError):
            await in_flight
        assert time.monotonic() - started < 2
        with pytest.raises(ToolServerDiedError):
            await pool.call("flaky.echo", {"text": "x"})


# --- ownership across tasks, and closing -------------------------------------------------------


async def test_pool_started_closed_and_called_from_different_tasks() -> None:
    """As inside an async Ray actor: every method call is its own asyncio task."""
    pool = McpClientPool([flaky_server("xtask", host_pids=True)])
    await asyncio.create_task(pool.start())
    pid = await asyncio.create_task(server_pid(pool, "xtask"))
    calls = [asyncio.create_task(pool.call("xtask.echo", {"text": str(i)})) for i in range(10)]
    assert [r.text for r in await asyncio.gather(*calls)] == [str(i) for i in range(10)]
    await asyncio.create_task(pool.close())
    assert await wait_gone(pid)
    await pool.close()  # idempotent
    with pytest.raises(ToolError, match="closed"):
        await pool.call("xtask.echo", {"text": "x"})
    owners = [t for t in asyncio.all_tasks() if t.get_name() == "mcp-connection-xtask"]
    assert not [t for t in owners if not t.done()]


# --- streamable HTTP ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_docs_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [PY, "-m", "agentmesh.examples.docs_server", "--http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"docs_server --http did not listen: {stderr}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def test_streamable_http_server(http_docs_server: str) -> None:
    async with McpClientPool([HttpServer(name="web", url=http_docs_server)]) as pool:
        assert {t.qualified_name for t in pool.tools()} == {
            "web.search_docs",
            "web.read_doc",
            "web.word_count",
        }
        result = await pool.call("web.search_docs", {"query": "GGUF models on CPUs", "limit": 1})
        assert not result.is_error
        assert isinstance(result.structured, dict)
        hits = result.structured["result"]
        assert isinstance(hits, list) and len(hits) == 1
        assert isinstance(hits[0], dict) and hits[0]["doc_id"] == "gguf-quantisation"
        count = await pool.call("web.word_count", {"text": "a b c"})
        assert count.structured == {"result": 3}

"""MCP servers nobody here wrote (mcp-server-time, mcp-server-git from the registry) in a mesh."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentmesh import Mesh, StdioServer, ToolCallBlocked
from agentmesh.protocols.mcp import Sandbox

from .mesh_agents import Tooler

POLICY = str(Path(__file__).parent / "policies" / "reference.yaml")


class Ops(Tooler):
    """Runs read-only operations tools."""

    name = "ops"
    tools = ("time.*", "git.*")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repo")
    path.chmod(0o755)  # the sandboxed server runs as an unprivileged user; it only reads
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "notes.txt").write_text("edge agents\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first notes"], check=True)
    return path


@pytest.fixture(scope="module")
async def ops_mesh(ray_session: None, repo: Path) -> AsyncIterator[Mesh]:
    servers = [
        StdioServer(
            name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone=UTC"]
        ),
        StdioServer(
            name="git",
            command=[sys.executable, "-m", "mcp_server_git", "--repository", str(repo)],
            sandbox=Sandbox(readable=[str(repo)]),
            # the repository belongs to another user than the sandboxed server: tell git so
            env={
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "safe.directory",
                "GIT_CONFIG_VALUE_0": str(repo),
            },
        ),
    ]
    async with Mesh([Ops], tools=servers, policy=POLICY) as mesh:
        yield mesh


async def test_time_server_answers_through_the_mesh(ops_mesh: Mesh) -> None:
    text = await ops_mesh.call(
        "ops", "call_tool", tool="time.get_current_time", args={"timezone": "UTC"}
    )
    answer = json.loads(str(text))
    assert answer["timezone"] == "UTC" and answer["datetime"].endswith("+00:00")
    converted = await ops_mesh.call(
        "ops",
        "call_tool",
        tool="time.convert_time",
        args={"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
    )
    assert "21:00" in str(converted)


async def test_git_server_reads_and_policy_forbids_writes(ops_mesh: Mesh, repo: Path) -> None:
    log = await ops_mesh.call("ops", "call_tool", tool="git.git_log", args={"repo_path": str(repo)})
    assert "first notes" in str(log)
    status = await ops_mesh.call(
        "ops", "call_tool", tool="git.git_status", args={"repo_path": str(repo)}
    )
    assert "working tree clean" in str(status)
    # the server offers git_commit, but the policy grants only read-only tools
    assert "git.git_commit" in {t.qualified_name for t in ops_mesh.tools()}
    with pytest.raises(ToolCallBlocked) as info:
        await ops_mesh.call(
            "ops",
            "call_tool",
            tool="git.git_commit",
            args={"repo_path": str(repo), "message": "sneaky"},
        )
    assert info.value.decision.target == "git.git_commit"
    visible = await ops_mesh.call("ops", "visible")
    assert isinstance(visible, list) and "git.git_commit" not in visible

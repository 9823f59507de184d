"""A pool of security actors per node: each principal's traffic is vetted by one member."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
from a2a.types import Message, Part, Role, TaskState

from agentmesh import ConfigError, Decision, Mesh
from agentmesh._private.router import pool_member
from agentmesh.audit import AuditEntry
from agentmesh.protocols.a2a_tasks import to_value

from .mesh_agents import DOCS, FLAKY, POLICY, Left, Tooler


def test_pool_size_must_be_a_positive_whole_number() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="security_pool"):
            Mesh([Left], policy=POLICY, security_pool=bad)  # type: ignore[arg-type]


def test_pool_member_is_stable_and_spreads() -> None:
    assert pool_member("user:a", 4) == pool_member("user:a", 4)  # not Python's salted hash
    members = {pool_member(f"user:{i}", 4) for i in range(64)}
    assert members == {0, 1, 2, 3}


def _named(n: int, member: int, size: int) -> list[str]:
    """``n`` user principals the pool of ``size`` gives to ``member``."""
    names = (f"user:p{i}" for i in range(10_000))
    return [p for p in names if pool_member(p, size) == member][:n]


def _call(skill: str, **args: object) -> Message:
    message = Message(message_id="m", role=Role.ROLE_USER, parts=[Part(data=to_value(args))])
    message.metadata.update({"skill": skill})
    return message


async def _logged(mesh: Mesh) -> dict[str, list[Decision]]:
    """Each security actor's decisions as its audit log holds them, by the log's writer."""
    logs = {}
    for head in await mesh.audit_heads():
        header, *entries = Path(head.path).read_text(encoding="utf-8").splitlines()
        writer = json.loads(header)["writer"]
        logs[writer] = [AuditEntry.model_validate_json(line).decision for line in entries]
    return logs


async def test_each_principal_is_vetted_by_its_own_member(
    ray_session: None, tmp_path: Path
) -> None:
    async with Mesh(
        [Left, Tooler], tools=[DOCS, FLAKY], policy=POLICY, security_pool=2, audit_dir=tmp_path
    ) as mesh:
        node = str(ray.get_runtime_context().get_node_id())
        writers = [f"security-{node[:12]}-{member}" for member in (0, 1)]
        first, second = _named(1, 0, 2)[0], _named(1, 1, 2)[0]
        for principal in (first, second):
            task = await mesh.send("left", _call("echo", text="hi"), principal=principal)
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
        logs = await _logged(mesh)
        assert sorted(logs) == writers  # one log per member
        seen = [{d.principal for d in logs[w] if d.kind == "message"} for w in writers]
        assert first in seen[0] and first not in seen[1]
        assert second in seen[1] and second not in seen[0]
        # the mesh's own view merges every member's log
        merged = {d.principal for d in await mesh.decisions() if d.kind == "message"}
        assert {first, second} <= merged

        # an agent's tool calls go to its own member, which holds its own MCP sessions
        found = await mesh.call(
            "tooler", "call_tool", tool="docs.search_docs", args={"query": "ray"}
        )
        assert isinstance(found, str)
        member = pool_member("tooler", 2)
        logs = await _logged(mesh)
        calls = logs[writers[member]]
        assert any(d.kind == "tool_call" and d.principal == "tooler" for d in calls)
        other = logs[writers[1 - member]]
        assert not any(d.kind == "tool_call" for d in other)

"""Two Ray nodes on this machine (ray.cluster_utils.Cluster): placement by label, and one
security actor with its own MCP sessions per node, shared by that node's agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the nodes stay on loopback
    import ray
    from ray.cluster_utils import Cluster
    from agentmesh import Agent, Mesh, Policy, Resources, StdioServer, skill

    FLAKY = StdioServer(name="flaky", command=[sys.executable, sys.argv[1]])

    class Probe(Agent):
        '''Reports where it runs and which tool server session it reaches.'''

        resources = Resources(num_cpus=0.1, labels={"zone": "a"})

        @skill
        async def report(self) -> dict[str, str]:
            '''Its node's zone label and the tool server's instance token.'''
            token = (await self.use_tool("flaky.instance")).text
            zone = ray.get_runtime_context().get_node_labels().get("zone", "")
            return {"zone": str(zone), "server": token}

    class ProbeA2(Probe):
        '''A second agent on node a.'''

        name = "probe_a2"

    class ProbeB(Probe):
        '''An agent on node b.'''

        name = "probe_b"
        resources = Resources(num_cpus=0.1, labels={"zone": "b"})

    async def main() -> None:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "labels": {"zone": "a"}, "include_dashboard": False},
        )
        cluster.add_node(num_cpus=1, labels={"zone": "b"})
        cluster.wait_for_nodes()
        policy = Policy.from_yaml(
            "name: nodes\\nmessages: [{from: [user], to: ['*']}]\\n"
            "tools: {'*': [flaky.instance]}\\n"
        )
        try:
            async with Mesh(
                [Probe, ProbeA2, ProbeB], tools=[FLAKY], policy=policy, address=cluster.address
            ) as mesh:
                out = {n: await mesh.call(n, "report") for n in ("probe", "probe_a2", "probe_b")}
                decisions = await mesh.decisions()
                out["tool_calls"] = sorted(
                    d.principal for d in decisions if d.kind == "tool_call"
                )
            print("RESULT " + json.dumps(out))
        finally:
            cluster.shutdown()

    asyncio.run(main())
    """
)


def test_agents_on_two_nodes_use_their_own_nodes_tool_sessions(tmp_path: Path) -> None:
    flaky = Path(__file__).parent / "servers" / "flaky_server.py"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(flaky)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert [result[n]["zone"] for n in ("probe", "probe_a2", "probe_b")] == ["a", "a", "b"]
    # agents on one node share that node's session; the other node has its own
    assert result["probe"]["server"] == result["probe_a2"]["server"]
    assert result["probe_b"]["server"] != result["probe"]["server"]
    # both nodes' security actors' decisions are in the mesh's merged log
    assert result["tool_calls"] == ["probe", "probe_a2", "probe_b"]

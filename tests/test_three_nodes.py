"""Three Ray nodes on this machine (ray.cluster_utils.Cluster, on loopback): GPU agents on the
GPU node, edge agents on the edge node, spread and packed replicas, then the demo with the
bundled llama.cpp model spread over the nodes.

One subprocess builds the cluster once and runs both meshes (a cluster takes half a minute to
start on two cores); the tests read its report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the nodes stay on loopback
    import ray
    from ray.cluster_utils import Cluster
    from agentmesh import Agent, Mesh, Policy, Resources, skill
    from agentmesh.examples.demo import run_demo

    class Plain(Agent):
        '''Needs one tenth of a CPU and nothing else.'''

        resources = Resources(num_cpus=0.1)

        @skill
        def where(self) -> dict[str, str]:
            '''This actor's node, its tier label and the GPUs Ray gave it.'''
            ctx = ray.get_runtime_context()
            return {
                "node": ctx.get_node_id(),
                "tier": ctx.get_node_labels().get("tier", ""),
                "gpus": ",".join(str(g) for g in ray.get_gpu_ids()),
            }

    class Gpu(Plain):
        '''Needs a GPU.'''

        resources = Resources(num_cpus=0.1, num_gpus=1)

    class Edge(Plain):
        '''Runs on edge nodes only.'''

        resources = Resources(num_cpus=0.1, labels={"tier": "edge"})

    class Spreader(Plain):
        '''Three replicas on different nodes.'''

        replicas = 3
        resources = Resources(num_cpus=0.1, strategy="spread")

        @skill
        def where(self) -> dict[str, str]:
            '''Where this replica runs, answered after a while (so that calls made at once
            overlap, and each goes to a replica with none in flight).'''
            time.sleep(2)
            return super().where()

    class Packer(Plain):
        '''Two replicas on as few nodes as possible.'''

        replicas = 2
        resources = Resources(num_cpus=0.4, strategy="pack")

    async def main() -> None:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "labels": {"tier": "core"}, "include_dashboard": False},
        )
        cluster.add_node(num_cpus=1, labels={"tier": "edge"})
        cluster.add_node(num_cpus=1, num_gpus=1, labels={"tier": "core"})
        cluster.wait_for_nodes()
        policy = Policy.from_yaml("name: nodes\\nmessages: [{from: [user], to: ['*']}]\\n")
        out: dict = {}
        try:
            agents = [Plain, Gpu, Edge, Spreader, Packer]
            async with Mesh(agents, policy=policy, address=cluster.address) as mesh:
                out["placement"] = mesh.placement()
                for name in ("plain", "gpu", "edge"):
                    out[name] = await mesh.call(name, "where")
                # three calls at once go to the three replicas (each to the least busy)
                out["spreader"] = await asyncio.gather(
                    *(mesh.call("spreader", "where") for _ in range(3))
                )
                out["nodes"] = {
                    n["NodeID"]: {"gpus": n["Resources"].get("GPU", 0), **n["Labels"]}
                    for n in ray.nodes() if n["Alive"]
                }
            report = await run_demo(address=cluster.address)
            brief = report.result.output
            out["demo"] = {
                "succeeded": report.result.succeeded,
                "summary_model": brief["summary_model"],
                "summary": brief["summary"],
                "sources": brief["sources"],
                "quarantined": len(report.quarantine),
                "placement": report.placement,
            }
            print("RESULT " + json.dumps(out))
        finally:
            cluster.shutdown()

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("llama_cpp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
        cwd=tmp_path_factory.mktemp("three-nodes"),
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return result


def _node(report: dict[str, Any], tier: str, *, gpus: float) -> str:
    [node] = [n for n, v in report["nodes"].items() if v["tier"] == tier and v["gpus"] == gpus]
    return node


def test_a_gpu_agent_lands_on_the_gpu_node_and_others_need_none(report: dict[str, Any]) -> None:
    assert len(report["nodes"]) == 3
    gpu_node = _node(report, "core", gpus=1)
    assert report["gpu"]["node"] == gpu_node and report["gpu"]["gpus"] == "0"
    # an agent that needs no GPU is kept off the GPU node while the others have room
    assert report["plain"]["node"] != gpu_node and report["plain"]["gpus"] == ""


def test_an_edge_agent_lands_on_the_edge_node(report: dict[str, Any]) -> None:
    assert report["edge"]["node"] == _node(report, "edge", gpus=0)
    assert report["edge"]["tier"] == "edge"


def test_spread_replicas_land_on_three_distinct_nodes(report: dict[str, Any]) -> None:
    reported = sorted(r["node"] for r in report["spreader"])
    assert len(set(reported)) == 3  # the replicas' own answers: three different nodes
    assert reported == sorted(report["placement"]["spreader"]) == sorted(report["nodes"])


def test_packed_replicas_share_a_node(report: dict[str, Any]) -> None:
    [node, again] = report["placement"]["packer"]
    assert node == again


@pytest.mark.llama
def test_the_demo_runs_spread_over_the_cluster(report: dict[str, Any]) -> None:
    demo = report["demo"]
    assert demo["succeeded"] and demo["summary_model"].startswith("llama_cpp:")
    assert demo["summary"].startswith("In short, running agents at the edge")
    assert len(demo["sources"]) == 2 and demo["quarantined"] == 1
    placed = demo["placement"]
    assert sorted(placed) == ["analyst", "researcher", "writer"]
    nodes = {node for agent_nodes in placed.values() for node in agent_nodes}
    assert len(nodes) > 1 and nodes <= set(report["nodes"])

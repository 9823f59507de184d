"""A node lost from a real multi-raylet cluster (ray.cluster_utils.Cluster) in the middle of a
run: its agent that fits elsewhere is restarted on the remaining node and its plan node retried,
the effect done once; an agent pinned by labels to the lost node fails its plan node, bounded,
with AgentLostError saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the nodes stay on loopback
    import ray
    from ray.cluster_utils import Cluster
    from agentmesh import (
        Agent, Mesh, Plan, PlanStep, Policy, Resources, RetryPolicy, RunFailedError,
        TemplatePlanner, skill,
    )

    WORK = sys.argv[1]

    class Mover(Agent):
        '''Runs on any node that offers a "worker" resource.'''

        resources = Resources(num_cpus=0.1, custom={"worker": 0.5})

        @skill
        async def work(self, folder: str, key: str) -> str:
            '''First attempt: leave a marker naming its node's zone, then wait for that node to
            go; a later attempt: the effect (a line naming its zone), once.'''
            zone = str(ray.get_runtime_context().get_node_labels().get("zone", ""))
            marker = os.path.join(folder, key + ".started")
            if not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(zone)
                await asyncio.sleep(300)
                raise RuntimeError("its node was never removed")
            with open(os.path.join(folder, key + ".effects"), "a") as f:
                f.write(zone + "\\n")
            return zone

    class Pinned(Mover):
        '''Pinned by its labels to the nodes of zone b.'''

        name = "pinned"
        resources = Resources(num_cpus=0.1, labels={"zone": "b"})

    def lines(path):
        return open(path).read().splitlines() if os.path.exists(path) else []

    async def main() -> None:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "labels": {"zone": "a"}, "include_dashboard": False},
        )
        node_b = cluster.add_node(num_cpus=1, resources={"worker": 1}, labels={"zone": "b"})
        cluster.wait_for_nodes()
        policy = Policy.from_yaml("name: loss\\nmessages: [{from: [user], to: ['*']}]\\n")
        steps = [
            PlanStep(id=k, agent=k, skill="work", args={"folder": WORK, "key": k})
            for k in ("mover", "pinned")
        ]
        planner = TemplatePlanner(lambda goal: Plan(goal=goal, steps=steps))
        out = {}
        try:
            async with Mesh(
                [Mover, Pinned],
                policy=policy,
                address=cluster.address,
                retry=RetryPolicy(base_delay_s=0.05, restart_timeout_s=30),
            ) as mesh:
                # a second worker node, only now: the mover started on node b
                cluster.add_node(num_cpus=1, resources={"worker": 1}, labels={"zone": "c"})
                cluster.wait_for_nodes()
                run = asyncio.ensure_future(mesh.run("survive", planner=planner))
                markers = [os.path.join(WORK, k + ".started") for k in ("mover", "pinned")]
                deadline = time.monotonic() + 120
                while not all(map(os.path.exists, markers)):
                    assert time.monotonic() < deadline and not run.done(), "nodes never started"
                    await asyncio.sleep(0.2)
                out["started_in"] = [open(m).read() for m in markers]
                await asyncio.to_thread(cluster.remove_node, node_b)
                try:
                    result = await asyncio.wait_for(run, 180)
                except RunFailedError as exc:
                    result = exc.result
                out["nodes"] = {n.step_id: n.model_dump(mode="json") for n in result.nodes}
                out["effects"] = {
                    k: lines(os.path.join(WORK, k + ".effects")) for k in ("mover", "pinned")
                }
                # the lost node's security actor is forgotten: the mesh still answers
                decisions = await mesh.decisions()
                out["vetted"] = sorted(d.target for d in decisions if d.principal == "user")
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
        print("RESULT " + json.dumps(out))

    asyncio.run(main())
    """
)


def test_a_lost_nodes_agents_move_or_fail_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=tmp_path,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["started_in"] == ["b", "b"]
    mover, pinned = result["nodes"]["mover"], result["nodes"]["pinned"]
    # the mover was restarted on the remaining worker node, its node retried, the effect once
    assert mover["status"] == "succeeded" and mover["output"] == "c", mover
    assert mover["attempts"] == 2
    assert [e["type"] for e in mover["errors"]] == ["AgentUnavailableError"]
    assert result["effects"]["mover"] == ["c"]
    # the pinned agent has nowhere to go: its node fails, typed, saying why
    assert pinned["status"] == "failed" and pinned["gave_up"] == "lost", pinned
    assert pinned["error"]["type"] == "AgentLostError"
    assert "left the cluster" in pinned["error"]["message"]
    assert "'zone': 'b'" in pinned["error"]["message"]
    assert result["effects"]["pinned"] == []
    assert result["vetted"].count("mover.work") == 2, result["vetted"]

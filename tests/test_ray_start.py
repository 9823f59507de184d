"""A mesh joins a cluster whose head was started with Ray's CLI (``ray start --head``, on
loopback, with its own temp dir and ports) and places an agent by label on a worker node.

The worker is not ``ray start --address``: on one machine that cannot stay on loopback in Ray
2.60. With RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (which keeps a node's sockets on 127.0.0.1) the
CLI refuses to add a worker at all; without it the CLI rewrites 127.0.0.1, in --address and
--node-ip-address alike, to the machine's outside address; and any other loopback address
(127.0.0.2) makes the GCS and raylet listen on every interface. So the worker is started by a
small Python process making the call ``ray start --address --block`` makes,
``ray._private.node.Node(head=False)``, without that refusal (as ray.cluster_utils does).

Each node stops when this test signals the process that started it (it then stops its own
processes). ``ray stop`` is not used: it ends every Ray process on the machine by name, this test
session's own Ray and anyone else's included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil  # the copy Ray ships (on the path once ray is imported: conftest does)
import pytest

RAY = Path(sys.executable).with_name("ray")
STARTED = "Ray runtime started."

WORKER = textwrap.dedent(
    """
    import os, sys, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback
    import ray
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=sys.argv[1],
        node_ip_address="127.0.0.1",
        num_cpus=1,
        labels={"tier": "edge"},
        object_store_memory=150 * 1024 * 1024,
        min_worker_port=0,
        max_worker_port=0,
        node_manager_port=0,
        include_log_monitor=False,
    )
    params.dashboard_agent_listen_port = None  # any free port, not the head's
    node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    print("Ray runtime started.", flush=True)
    while True:  # as ray start --block: SIGTERM stops the node's processes
        time.sleep(1)
    """
)

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import ray
    from agentmesh import Agent, Mesh, Policy, Resources, skill

    class EdgeProbe(Agent):
        '''Runs on edge nodes only.'''

        resources = Resources(num_cpus=0.5, labels={"tier": "edge"})

        @skill
        def where(self) -> dict[str, str]:
            '''This actor's node and tier label, and the cluster it runs in.'''
            ctx = ray.get_runtime_context()
            return {
                "node": ctx.get_node_id(),
                "tier": ctx.get_node_labels().get("tier", ""),
                "cluster": ctx.gcs_address,
            }

    async def main() -> None:
        policy = Policy.from_yaml("name: cli\\nmessages: [{from: [user], to: ['*']}]")
        async with Mesh([EdgeProbe], address=sys.argv[1], policy=policy) as mesh:
            out = await mesh.call("edge_probe", "where")
            out["placement"] = mesh.placement()["edge_probe"]
        print("RESULT " + json.dumps(out))

    asyncio.run(main())
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RayNode:
    """One process that starts a Ray node and blocks (``ray start --block`` or the worker
    script), and every process it starts."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.children: list[psutil.Process] = []

    def wait_started(self, *, timeout_s: float) -> None:
        """Until the node is up; remembers the processes started for it."""
        deadline = time.monotonic() + timeout_s
        while STARTED not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the node did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def listening(self) -> set[str]:
        """The addresses its processes listen on (IPv4-mapped IPv6 ones as IPv4)."""
        found = set()
        for proc in self.children:
            with contextlib.suppress(psutil.Error):
                conns = proc.net_connections(kind="inet")
                listening = [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
                found |= {ip.removeprefix("::ffff:") for ip in listening}
        return found

    def stop(self) -> list[int]:
        """SIGTERM (it stops its node's processes); the pids of any of them still left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _gone, alive = psutil.wait_procs(self.children, timeout=10)
        for proc in alive:  # only the processes started for this node
            proc.kill()
        return [proc.pid for proc in alive]


@pytest.fixture
def ray_dir() -> Iterator[Path]:
    # short: Ray's unix socket paths under it must stay within 107 bytes
    path = Path(tempfile.mkdtemp(prefix="amray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_mesh_places_an_agent_by_label_on_a_worker_of_a_ray_start_head(ray_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every socket on 127.0.0.1
    env["RAY_AUTH_MODE"] = "token"  # as `ray start --head` turns on; a joining driver must ask
    port = _free_port()
    gcs = f"127.0.0.1:{port}"
    nodes: list[RayNode] = []
    try:
        head = RayNode(
            [
                *(str(RAY), "start", "--head", "--block", f"--port={port}"),
                *("--node-ip-address=127.0.0.1", f"--temp-dir={ray_dir}", "--num-cpus=1"),
                *("--labels=tier=core", "--include-dashboard=false", "--disable-usage-stats"),
                *("--min-worker-port=0", "--max-worker-port=0"),  # any free port, not 10002+
                f"--dashboard-agent-listen-port={_free_port()}",
                f"--object-store-memory={150 * 1024 * 1024}",
            ],
            env=env,
            log=ray_dir / "head.log",
        )
        nodes.append(head)
        head.wait_started(timeout_s=120)
        worker = RayNode([sys.executable, "-c", WORKER, gcs], env=env, log=ray_dir / "worker.log")
        nodes.append(worker)
        worker.wait_started(timeout_s=120)
        listening = {address for node in nodes for address in node.listening()}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, gcs],
            capture_output=True,
            text=True,
            timeout=240,
            env=env,
            cwd=ray_dir,
        )
    finally:
        left = [pid for node in reversed(nodes) for pid in node.stop()]
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    # the agent joined the CLI's cluster and went to the worker labelled edge (the head: core)
    assert result["cluster"] == gcs and result["tier"] == "edge"
    assert result["placement"] == [result["node"]]
    assert listening == {"127.0.0.1"}, "the nodes must listen on loopback only"
    assert left == [], f"processes of the nodes still running: {left}"


def test_joining_an_address_where_no_cluster_listens_fails_at_once(tmp_path: Path) -> None:
    """``ray.init`` alone would retry an unreachable head for minutes; the mesh says why now."""
    with socket.socket() as probe:  # a port nothing listens on (bound, never listened)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        env = {**os.environ, "AGENTMESH_STATE_DIR": str(tmp_path)}
        env.pop("RAY_ADDRESS", None)
        started = time.monotonic()
        demo = subprocess.run(
            [str(RAY.with_name("agentmesh")), "demo", "--address", f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert demo.returncode == 1, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "ConfigError" in demo.stdout and f"cannot join the Ray cluster at 127.0.0.1:{port}" in (
        demo.stdout.replace("\n", " ")
    )
    assert time.monotonic() - started < 60

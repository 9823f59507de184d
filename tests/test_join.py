"""A mesh given an address joins that Ray cluster instead of starting one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import ray

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import ray
    from agentmesh import Agent, Mesh, Policy, skill

    class Where(Agent):
        '''Reports the cluster it runs in.'''

        @skill
        def cluster(self) -> str:
            '''The GCS address of the cluster this actor runs in.'''
            return ray.get_runtime_context().gcs_address

    async def main() -> None:
        policy = Policy.from_yaml("name: join\\nmessages: [{from: [user], to: ['*']}]")
        async with Mesh([Where], address=sys.argv[1], policy=policy) as mesh:
            print("JOINED", await mesh.call("where", "cluster"))
        print("CONNECTED AFTER CLOSE", ray.is_initialized())

    asyncio.run(main())
    """
)


def test_mesh_joins_an_existing_cluster(ray_session: None) -> None:
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), "the embedded Ray must stay on loopback"
    before = ray.cluster_resources()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, address],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"JOINED {address}" in out.stdout
    # closing the mesh disconnects the driver it connected, and leaves the cluster running
    assert "CONNECTED AFTER CLOSE False" in out.stdout
    assert ray.cluster_resources() == before

"""Bringing a dead agent back before its node is retried.

Ray restarts an agent's actor (``Mesh(max_restarts=...)``) on a node that offers what it asks
for: its own, or another if its own left the cluster. The restarted actor is a fresh process
that knows nothing of the mesh, so it is joined again (directory, security actor, tool socket);
a node the mesh has not used before gets its security actors first. An agent that no live node
can take (pinned by labels to a node that left) stays "restarting" in Ray for ever: the wait is
bounded and ends in AgentLostError saying why.
"""

from __future__ import annotations

import asyncio
import contextlib

import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorDiedError, RayActorError

from agentmesh._private.mesh_actors import MeshActors, replica_name
from agentmesh.errors import AgentLostError, AgentMeshError, UnknownAgentError

__all__ = ["recover_agent"]

#: Pause between probes of an actor Ray is still restarting.
POLL_S = 0.5
#: How long another agent may take to come back and say whether it is joined.
PEER_PROBE_S = 5.0


async def recover_agent(actors: MeshActors, agent: str, *, timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until every replica of ``agent`` answers, then join again
    those Ray restarted; also join any other agent Ray restarted meanwhile (a nested call's
    callee may have died).

    Raises:
        AgentLostError: a replica did not answer in time, or is dead for good (restarts
            spent): the router would go on sending it work.
    """
    if agent not in actors.agents:
        raise UnknownAgentError(agent, known=list(actors.agents))

    async def replica(i: int) -> None:
        handle = actors.agents[agent][i]
        old_node = actors.nodes[agent][i]
        name = replica_name(agent, i)
        node = await _answering(actors, name, handle, old_node, timeout_s)
        if old_node != node and not await _alive(old_node):
            actors.forget_node(old_node)
        if old_node != node or not await asyncio.wait_for(_joined(handle), PEER_PROBE_S):
            await actors.join(agent, i, node)

    await asyncio.gather(*(replica(i) for i in range(len(actors.agents[agent]))))
    await _rejoin_restarted(actors, skip=agent)


async def _answering(
    actors: MeshActors, agent: str, handle: ActorHandle, old_node: str, timeout_s: float
) -> str:
    """The node ``agent``'s actor (a replica's name) answers from, once Ray has it running
    again."""
    try:
        return await _node_when_up(handle, timeout_s)
    except ActorDiedError as exc:  # no restarts left: it never comes back
        lost = not await _alive(old_node)
        detail = f"it died and its restarts are spent ({str(exc)[:200]})"
        raise AgentLostError(agent, detail, node_lost=lost) from None
    except TimeoutError:
        pass
    wants = actors.wants.get(agent, "?")
    if not await _alive(old_node):
        detail = (
            f"its node {old_node[:12]} left the cluster and no live node took it within "
            f"{timeout_s:g}s; it asks for {wants}"
        )
        raise AgentLostError(agent, detail, node_lost=True)
    detail = f"Ray did not restart it within {timeout_s:g}s; it asks for {wants}"
    raise AgentLostError(agent, detail, node_lost=False)


async def _node_when_up(handle: ActorHandle, timeout_s: float) -> str:
    """The actor's node once it answers, probing while Ray restarts it.

    Raises:
        TimeoutError: not up within ``timeout_s``.
        ActorDiedError: dead for good.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        try:
            return await asyncio.wait_for(_node_of(handle), left)
        except ActorDiedError:
            raise
        except RayActorError:  # restarting, or the call raced its restart
            await asyncio.sleep(min(POLL_S, left))
    raise TimeoutError


async def _node_of(handle: ActorHandle) -> str:
    node: str = await handle.node_id.remote()
    return node


async def _alive(node: str) -> bool:
    nodes = await asyncio.to_thread(ray.nodes)
    return any(n.get("NodeID") == node and n.get("Alive") for n in nodes)


async def _rejoin_restarted(actors: MeshActors, *, skip: str) -> None:
    """Join again every other local agent that answers but is not joined (Ray restarted it);
    one that does not answer now is left to its own node's retry."""

    async def check(name: str, i: int) -> None:
        handle = actors.agents[name][i]
        with contextlib.suppress(RayActorError, AgentMeshError, TimeoutError):
            node = await _node_when_up(handle, PEER_PROBE_S)  # waits out a restart under way
            if not await asyncio.wait_for(_joined(handle), PEER_PROBE_S):
                await actors.join(name, i, node)

    others = [n for n in actors.agents if n != skip and n not in actors.remotes]
    await asyncio.gather(
        *(check(name, i) for name in others for i in range(len(actors.agents[name])))
    )


async def _joined(handle: ActorHandle) -> bool:
    joined: bool = await handle.joined.remote()
    return joined

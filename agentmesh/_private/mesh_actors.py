"""The actors of one running mesh: security actors per node, models, agents, and the router.

Kept apart from :mod:`agentmesh.mesh` so the mesh reads as what it offers; this is the order
they start in (the driver's security actors and tools first, then models, agents and remote
agents, each placed and probed), how they are joined to each other, and how they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import ray
from a2a.types import AgentCard
from ray.actor import ActorHandle
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agentmesh._private.mesh_start import await_started, load_probe, spawn_agent
from agentmesh._private.model_digest import weights_digest
from agentmesh._private.model_router import ModelRouter, RoutedModel
from agentmesh._private.model_service import launch_model_service
from agentmesh._private.placement import remove_group
from agentmesh._private.policy_schema import Policy
from agentmesh._private.remote_host import spawn_remote_host
from agentmesh._private.router import Peer, Router, await_ray, pool_member
from agentmesh._private.security_actor import SecurityActor
from agentmesh.agent import Agent
from agentmesh.breaker import BreakerPolicy
from agentmesh.errors import ConfigError, UnknownAgentError, UnknownModelError, UnknownToolError
from agentmesh.models import ModelCache, ModelEntry, ModelRoute
from agentmesh.planner import SkillInfo
from agentmesh.protocols import a2a
from agentmesh.protocols.mcp import McpServerConfig, ToolInfo
from agentmesh.remote import RemoteAgent
from agentmesh.tools import ToolLimits

__all__ = ["MeshActors", "SecuritySetup", "replica_name"]


@dataclass(frozen=True)
class SecuritySetup:
    """What every security actor of a mesh is started with."""

    policy: Policy
    servers: Sequence[McpServerConfig]
    limits: ToolLimits
    pool: int
    audit_dir: str
    audit_key: bytes | None


class MeshActors:
    """The handles of a mesh's actors, filled by :meth:`start` and emptied by :meth:`close`."""

    def __init__(self) -> None:
        # ``security_pool`` security actors per node that hosts agents (and the driver's),
        # keyed (node, member): each holds its own MCP sessions and vets its principals.
        self.security: dict[tuple[str, int], ActorHandle] = {}
        self.channels: dict[tuple[str, int], str | None] = {}  # -> its tool socket
        self.models: dict[str, tuple[ActorHandle, ...]] = {}  # each model's replicas
        self.model_router = ModelRouter({}, {})
        self.agents: dict[str, tuple[ActorHandle, ...]] = {}  # each agent's replicas
        self.groups: list[PlacementGroup] = []  # the pack placement groups, removed at close
        self.nodes: dict[str, list[str]] = {}  # agent -> its replicas' nodes, as last seen
        self.cards: dict[str, AgentCard] = {}
        self.tools: list[ToolInfo] = []
        self.router: Router | None = None
        # kept to join an agent again after Ray restarted it (see ``join``)
        self.setup: SecuritySetup | None = None
        self.directory: dict[str, Peer] = {}
        self.wants: dict[str, str] = {}  # replica -> what it asks of a node, for messages
        self.remotes: list[str] = []
        self._security_lock = asyncio.Lock()

    async def start(
        self,
        agent_classes: Sequence[type[Agent]],
        remote_agents: Sequence[RemoteAgent],
        model_specs: Mapping[str, ModelEntry],
        *,
        routes: Mapping[str, ModelRoute] | None = None,
        model_cache: ModelCache | None = None,
        security: SecuritySetup,
        start_timeout_s: float,
        driver: str,
        replicas: Mapping[str, int],
        max_restarts: int = 0,
        breaker: BreakerPolicy | None = None,
    ) -> None:
        """Start every actor and join the agents; ``driver`` is the principal the router
        speaks as (no agent may take its name); ``replicas`` overrides agents' own counts.
        Ray restarts a dead agent ``max_restarts`` times; ``breaker`` is the policy of each
        agent's per-model breakers. ``routes`` and ``model_cache``: see :mod:`agentmesh.models`."""
        self.setup = security
        # The security actor of the driver's node first: a tool server that cannot start
        # fails the mesh before any agent exists.
        driver_node = str(ray.get_runtime_context().get_node_id())
        await self.security_on(driver_node, security)
        self.check_declared_tools(agent_classes)
        routed = {}
        for name, entry in model_specs.items():
            digest = await asyncio.to_thread(weights_digest, entry.spec)  # reads the weights
            services = tuple(
                launch_model_service(
                    name, entry.spec, cache=model_cache, digest=digest, max_queue=entry.max_queue
                )
                for _ in range(entry.replicas)
            )
            self.models[name] = services
            routed[name] = RoutedModel(services, entry, digest)
        self.model_router = ModelRouter(routed, routes or {})
        wants = self.wants
        for cls in agent_classes:
            count = replicas.get(cls.name, cls.replicas)
            self.agents[cls.name], group = spawn_agent(
                cls, self.model_router, count=count, max_restarts=max_restarts, breaker=breaker
            )
            if group is not None:
                self.groups.append(group)
            wants |= {
                replica_name(cls.name, i): str(cls.resources.model_dump()) for i in range(count)
            }
        for remote in remote_agents:  # a refused card fails the start here
            name, _card, handle = await spawn_remote_host(remote)
            if name in self.agents or name == driver:
                ray.kill(handle)
                raise ConfigError(f"remote agent {remote.url} takes the name {name!r}, in use")
            self.agents[name] = (handle,)
            wants[name] = f"remote agent at {remote.url}"
        # A model that cannot load fails the start, not the first agent that uses it.
        loading = [
            (f"model {n!r} #{i}", n, h) for n, hs in self.models.items() for i, h in enumerate(hs)
        ]
        await await_started(
            {key: load_probe(n, h) for key, n, h in loading},
            {key: f"num_cpus={model_specs[n].spec.num_cpus}" for key, n, _ in loading},
            timeout_s=start_timeout_s,
        )
        every = [  # (agent, replica's index, actor) for every replica of every agent
            (name, i, handle)
            for name, handles in self.agents.items()
            for i, handle in enumerate(handles)
        ]
        card_probes: dict[str, Awaitable[bytes]] = {
            replica_name(name, i): await_ray(
                h.card.remote(), what=f"agent {replica_name(name, i)!r}"
            )
            for name, i, h in every
        }
        raw_cards = await await_started(card_probes, wants, timeout_s=start_timeout_s)
        self.cards = {name: AgentCard.FromString(raw_cards[name]) for name in self.agents}
        self.directory = {
            name: Peer(handles, frozenset(s.id for s in self.cards[name].skills))
            for name, handles in self.agents.items()
        }
        nodes: list[str] = await asyncio.gather(
            *(await_ray(h.node_id.remote(), what=replica_name(n, i)) for n, i, h in every)
        )
        for (name, _, _), node in zip(every, nodes, strict=True):
            self.nodes.setdefault(name, []).append(node)
        for node in dict.fromkeys(nodes):  # one security actor (and tool sessions) per node
            await self.security_on(node, security)
        local = {cls.name for cls in agent_classes}
        self.remotes = [name for name in self.agents if name not in local]
        if remotes := self.remotes:
            await asyncio.gather(  # a message to a remote agent leaves the mesh: checked so
                *(
                    await_ray(a.set_remote_agents.remote(remotes), what="security actor")
                    for a in self.security.values()
                )
            )
        await asyncio.gather(
            *(self.join(name, i, node) for (name, i, _), node in zip(every, nodes, strict=True))
        )
        pool = [self.security[(driver_node, i)] for i in range(security.pool)]
        self.router = Router(driver, self.directory, pool[0], pool=pool)

    async def join(self, name: str, replica: int, node: str) -> None:
        """Join replica ``replica`` of agent ``name``, running on ``node``, to the mesh: the
        directory, the security actor that guards it on its node (started first if that node
        has none: an agent Ray restarted on another node) and that actor's tool socket. A
        replica's traffic is its agent's: the same pool member, on its own node."""
        assert self.setup is not None
        await self.security_on(node, self.setup)
        guard = (node, pool_member(name, self.setup.pool))
        self.nodes[name][replica] = node
        await await_ray(
            self.agents[name][replica].join.remote(
                self.directory, self.security[guard], self.channels[guard]
            ),
            what=f"agent {replica_name(name, replica)!r}",
        )

    def forget_node(self, node: str) -> None:
        """Drop the security actors of a node that left the cluster (they died with it)."""
        for key in [k for k in self.security if k[0] == node]:
            self.security.pop(key)
            self.channels.pop(key, None)

    async def security_on(self, node: str, security: SecuritySetup) -> None:
        """Start the security actors of ``node`` (once), each with its own MCP sessions."""
        async with self._security_lock:
            await self._security_on(node, security)

    async def _security_on(self, node: str, security: SecuritySetup) -> None:
        if (node, 0) in self.security:
            return
        actor_cls = ray.remote(num_cpus=0)(SecurityActor).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        )
        for member in range(security.pool):
            actor = cast(
                ActorHandle,
                actor_cls.remote(
                    security.policy,
                    servers=security.servers,
                    limits=security.limits,
                    audit_dir=security.audit_dir,
                    audit_key=security.audit_key,
                    audit_writer=f"security-{node[:12]}-{member}",
                ),
            )
            self.security[(node, member)] = actor
        members = range(security.pool)
        started: list[tuple[list[ToolInfo], str | None]] = await asyncio.gather(
            *(
                await_ray(self.security[(node, m)].start_tools.remote(), what="security actor")
                for m in members
            )
        )
        self.tools = self.tools or started[0][0]
        for member, (_tools, channel) in zip(members, started, strict=True):
            self.channels[(node, member)] = channel
        if self.remotes:  # a node started after the mesh (an agent restarted there)
            await asyncio.gather(
                *(
                    await_ray(
                        self.security[(node, m)].set_remote_agents.remote(self.remotes),
                        what="security actor",
                    )
                    for m in members
                )
            )

    def check_declared_tools(self, agent_classes: Sequence[type[Agent]]) -> None:
        """UnknownToolError for an agent that declares a tool no MCP server offers."""
        offered = [t.qualified_name for t in self.tools]
        for cls in agent_classes:
            for pattern in cls.tools:
                if not fnmatch.filter(offered, pattern):
                    raise UnknownToolError(
                        f"agent {cls.name!r} declares tool {pattern!r}, which no MCP server "
                        f"offers; tools: {offered}"
                    )

    def model(self, name: str, replica: int = 0) -> ActorHandle:
        """A model service actor of ``name``; UnknownModelError naming the configured ones."""
        if name not in self.models:
            raise UnknownModelError(f"no model {name!r}; configured: {sorted(self.models)}")
        return self.models[name][replica]

    def agent(self, name: str) -> ActorHandle:
        """The actor of agent ``name`` (its first replica); UnknownAgentError naming the known
        ones."""
        if name not in self.agents:
            raise UnknownAgentError(name, known=list(self.agents))
        return self.agents[name][0]

    def catalog(self) -> list[SkillInfo]:
        """Every skill of the started agents, with its schemas, as planners see it."""
        infos = []
        for name, card in self.cards.items():
            schemas = a2a.card_skill_schemas(card)
            for s in card.skills:
                infos.append(
                    SkillInfo(
                        agent=name,
                        skill=s.id,
                        description=s.description,
                        input_schema=schemas.get(s.id, {}).get("input", {}),
                        output_schema=schemas.get(s.id, {}).get("output", {}),
                    )
                )
        return infos

    async def close(self) -> None:
        """Stop every actor (whatever started of them) and forget the handles."""
        # a dead security actor has no MCP sessions left to close
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(a.close.remote() for a in self.security.values())), timeout=10
            )
        replicas = [h for handles in self.agents.values() for h in handles]
        models = [h for handles in self.models.values() for h in handles]
        for handle in [*replicas, *models, *self.security.values()]:
            ray.kill(handle)
        for group in self.groups:
            remove_group(group)
        self.agents.clear()
        self.directory.clear()
        self.groups.clear()
        self.nodes.clear()
        self.models.clear()
        self.security.clear()
        self.router = None


def replica_name(agent: str, replica: int) -> str:
    """How messages name an agent's replicas: ``writer``, ``writer#1``, ..."""
    return f"{agent}#{replica}" if replica else agent

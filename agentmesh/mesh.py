"""The mesh: agents as Ray actors, a security actor on every path, tools, models and plans.

``Mesh`` is the one object users hold. Started with no address it runs an embedded local Ray;
with an address it joins a cluster. It is the only place that turns the plain classes into
actors (users never call ``ray.remote``), and it speaks for the "user" principal when it calls
skills or runs a plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import ray
from a2a.types import AgentCard, Message, StreamResponse, Task
from pydantic import JsonValue
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agentmesh._private.mesh_start import await_started, load_probe, spawn_agent
from agentmesh._private.model_service import launch_model_service
from agentmesh._private.ray_init import ensure_ray
from agentmesh._private.remote_host import spawn_remote_host
from agentmesh._private.router import Peer, Router, await_ray, pool_member
from agentmesh._private.security_actor import SecurityActor
from agentmesh._private.tool_vetting import default_pins_path
from agentmesh.agent import Agent
from agentmesh.audit import AuditHead, default_audit_dir
from agentmesh.errors import (
    ConfigError,
    UnknownAgentError,
    UnknownModelError,
    UnknownToolError,
)
from agentmesh.executor import RunResult, execute
from agentmesh.inference import GenerateRequest, GenerateResponse, ModelSpec
from agentmesh.planner import Planner, SkillInfo, validate_plan
from agentmesh.protocols import a2a
from agentmesh.protocols.a2a_tasks import apply_event
from agentmesh.protocols.mcp import McpServerConfig, ToolInfo
from agentmesh.remote import RemoteAgent
from agentmesh.security import Decision, Policy, QuarantineItem, load_policy
from agentmesh.tools import ToolLimits

__all__ = ["USER", "Mesh"]


#: The principal the driver speaks as (Mesh.call and the plan executor).
USER = "user"
_NAMED_USER = re.compile(r"^user:[A-Za-z0-9._@-]{1,128}$")


def _principal(principal: str) -> str:
    """``user`` or ``user:<name>``: callers outside the mesh can never speak as an agent."""
    if principal != USER and not _NAMED_USER.match(principal):
        raise ConfigError(f"a principal is 'user' or 'user:<name>', not {principal[:140]!r}")
    return principal


class Mesh:
    """A running set of agents. Use ``async with Mesh(...) as mesh:``.

    Args:
        agents: the agent classes; each becomes one Ray actor named by its ``name``.
        tools: MCP servers to connect once at start and keep open.
        models: mesh models by name (``LlamaCppModel``, ``ScriptedModel``, ...).
        policy: a policy pack name under policies/, a YAML path, or a Policy.
        address: a Ray cluster to join; None starts an embedded local Ray.
        num_cpus: logical CPUs of the embedded Ray (ignored when joining a cluster).
        max_retries: how often the executor re-runs a node after a run failure.
        start_timeout_s: how long every actor may take to be placed and start; past it,
            start raises PlacementError naming the agents still waiting.
        tool_limits: size bounds and timeout of every tool call.
        remote_agents: A2A agents elsewhere, joined as mesh members through proxy actors
            once their (signed) cards are fetched and verified.
        security_pool: security actors per node. Each agent, and each user principal, is
            vetted by one of them (a stable hash of its name), so vetting spreads over cores
            while per-principal limits stay in one place; each member holds its own MCP
            sessions.
        audit_dir: where each security actor writes its hash-chained audit log of every
            decision (one file per actor, on its node; ``agentmesh audit verify DIR``);
            default ``$AGENTMESH_STATE_DIR/audit``, else ``./.agentmesh/audit``.
        audit_key: an HMAC key (16+ bytes) for the audit chain, so that a rewrite of a
            whole file without the key is detected too (``--key-file`` when verifying).
    """

    def __init__(
        self,
        agents: Sequence[type[Agent]],
        *,
        tools: Sequence[McpServerConfig] = (),
        models: Mapping[str, ModelSpec] | None = None,
        policy: str | Policy = "default",
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = 0,
        start_timeout_s: float = 120.0,
        tool_limits: ToolLimits | None = None,
        remote_agents: Sequence[RemoteAgent] = (),
        security_pool: int = 1,
        audit_dir: str | os.PathLike[str] | None = None,
        audit_key: bytes | None = None,
    ) -> None:
        if not all(isinstance(cls, type) and issubclass(cls, Agent) for cls in agents):
            raise ConfigError("agents must be Agent subclasses (the classes, not instances)")
        for cls in agents:
            if "skills" not in cls.__dict__:
                cls._define()  # an empty class body skipped the check at definition
        names = [cls.name for cls in agents] + [r.name for r in remote_agents if r.name]
        if not names and not remote_agents:
            raise ConfigError("a mesh needs at least one agent")
        if dups := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"agent names must be unique; repeated: {dups}")
        if "user" in names:
            raise ConfigError("'user' is the driver's principal and cannot name an agent")
        self.agent_classes = list(agents)
        self.remote_agents = list(remote_agents)
        self.servers = list(tools)
        self.model_specs = dict(models or {})
        for cls in agents:
            if cls.model is not None and cls.model not in self.model_specs:
                raise UnknownModelError(
                    f"agent {cls.name!r} uses model {cls.model!r}; configured: "
                    f"{sorted(self.model_specs)}"
                )
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.start_timeout_s = start_timeout_s
        limits = tool_limits or ToolLimits()
        if limits.pins_path is None:  # resolved here: actors may run in another directory
            limits = limits.model_copy(update={"pins_path": str(default_pins_path().resolve())})
        self.tool_limits = limits
        if not isinstance(security_pool, int) or security_pool < 1:
            raise ConfigError(f"security_pool is a whole number >= 1, not {security_pool!r}")
        self.security_pool = security_pool
        if audit_key is not None and (not isinstance(audit_key, bytes) or len(audit_key) < 16):
            raise ConfigError("audit_key is bytes, at least 16 of them")
        # resolved here, like the pins: the actors may run in another directory
        audit_path = Path(audit_dir) if audit_dir is not None else default_audit_dir()
        self.audit_dir = audit_path.resolve()
        self._audit_key = audit_key
        self._started_ray = False
        # ``security_pool`` security actors per node that hosts agents (and the driver's),
        # keyed (node, member): each holds its own MCP sessions and vets its principals.
        self._security: dict[tuple[str, int], ActorHandle] = {}
        self._channels: dict[tuple[str, int], str | None] = {}  # -> its tool socket
        self._models: dict[str, ActorHandle] = {}
        self._agents: dict[str, ActorHandle] = {}
        self._cards: dict[str, AgentCard] = {}
        self._tools: list[ToolInfo] = []
        self._router: Router | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Mesh:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> Mesh:
        """Start (or join) Ray and create the security actor, tools, models and agents."""
        self._started_ray = ensure_ray(address=self.address, num_cpus=self.num_cpus)
        try:
            await self._start_actors()
        except BaseException:
            await self.close()
            raise
        return self

    async def _start_actors(self) -> None:
        # The security actor of the driver's node first: a tool server that cannot start
        # fails the mesh before any agent exists.
        driver_node = str(ray.get_runtime_context().get_node_id())
        await self._security_on(driver_node)
        self._check_declared_tools()
        for name, spec in self.model_specs.items():
            self._models[name] = launch_model_service(name, spec)
        for cls in self.agent_classes:
            self._agents[cls.name] = spawn_agent(cls, self._models)
        wants = {cls.name: str(cls.resources.model_dump()) for cls in self.agent_classes}
        for remote in self.remote_agents:  # a refused card fails the start here
            name, _card, handle = await spawn_remote_host(remote)
            if name in self._agents or name == USER:
                ray.kill(handle)
                raise ConfigError(f"remote agent {remote.url} takes the name {name!r}, in use")
            self._agents[name] = handle
            wants[name] = f"remote agent at {remote.url}"
        # A model that cannot load fails the start, not the first agent that uses it.
        await await_started(
            {f"model {n!r}": load_probe(n, h) for n, h in self._models.items()},
            {f"model {n!r}": f"num_cpus={s.num_cpus}" for n, s in self.model_specs.items()},
            timeout_s=self.start_timeout_s,
        )
        card_probes: dict[str, Awaitable[bytes]] = {
            name: await_ray(handle.card.remote(), what=f"agent {name!r}")
            for name, handle in self._agents.items()
        }
        raw_cards = await await_started(card_probes, wants, timeout_s=self.start_timeout_s)
        self._cards = {name: AgentCard.FromString(raw) for name, raw in raw_cards.items()}
        directory = {
            name: Peer(handle, frozenset(s.id for s in self._cards[name].skills))
            for name, handle in self._agents.items()
        }
        nodes: list[str] = await asyncio.gather(
            *(await_ray(h.node_id.remote(), what=n) for n, h in self._agents.items())
        )
        for node in dict.fromkeys(nodes):  # one security actor (and tool sessions) per node
            await self._security_on(node)
        local = {cls.name for cls in self.agent_classes}
        if remotes := [name for name in self._agents if name not in local]:
            await asyncio.gather(  # a message to a remote agent leaves the mesh: checked so
                *(
                    await_ray(a.set_remote_agents.remote(remotes), what="security actor")
                    for a in self._security.values()
                )
            )
        guards = [
            (node, pool_member(n, self.security_pool))
            for n, node in zip(self._agents, nodes, strict=True)
        ]
        await asyncio.gather(
            *(
                await_ray(
                    h.join.remote(directory, self._security[guard], self._channels[guard]), what=n
                )
                for (n, h), guard in zip(self._agents.items(), guards, strict=True)
            )
        )
        pool = [self._security[(driver_node, i)] for i in range(self.security_pool)]
        self._router = Router(USER, directory, pool[0], pool=pool)

    async def _security_on(self, node: str) -> None:
        """Start the security actors of ``node`` (once), each with its own MCP sessions."""
        if (node, 0) in self._security:
            return
        actor_cls = ray.remote(num_cpus=0)(SecurityActor).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        )
        for member in range(self.security_pool):
            actor = cast(
                ActorHandle,
                actor_cls.remote(
                    self.policy,
                    servers=self.servers,
                    limits=self.tool_limits,
                    audit_dir=str(self.audit_dir),
                    audit_key=self._audit_key,
                    audit_writer=f"security-{node[:12]}-{member}",
                ),
            )
            self._security[(node, member)] = actor
        members = range(self.security_pool)
        started: list[tuple[list[ToolInfo], str | None]] = await asyncio.gather(
            *(
                await_ray(self._security[(node, m)].start_tools.remote(), what="security actor")
                for m in members
            )
        )
        self._tools = self._tools or started[0][0]
        for member, (_tools, channel) in zip(members, started, strict=True):
            self._channels[(node, member)] = channel

    def _check_declared_tools(self) -> None:
        offered = [t.qualified_name for t in self._tools]
        for cls in self.agent_classes:
            for pattern in cls.tools:
                if not fnmatch.filter(offered, pattern):
                    raise UnknownToolError(
                        f"agent {cls.name!r} declares tool {pattern!r}, which no MCP server "
                        f"offers; tools: {offered}"
                    )

    async def close(self) -> None:
        """Stop the mesh's actors (and the embedded Ray, if this mesh started it)."""
        # a dead security actor has no MCP sessions left to close
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(a.close.remote() for a in self._security.values())), timeout=10
            )
        for handle in [*self._agents.values(), *self._models.values(), *self._security.values()]:
            ray.kill(handle)
        self._agents.clear()
        self._models.clear()
        self._security.clear()
        self._router = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    # --- using it ----------------------------------------------------------------------------

    def _ready(self) -> Router:
        if self._router is None:
            raise ConfigError("the mesh is not started: use `async with Mesh(...)` or start()")
        return self._router

    def cards(self) -> list[AgentCard]:
        """The A2A Agent Cards of every agent in the mesh."""
        self._ready()
        return list(self._cards.values())

    def tools(self) -> list[ToolInfo]:
        """Every tool the connected MCP servers offer."""
        return list(self._tools)

    def catalog(self) -> list[SkillInfo]:
        """Every skill in the mesh, with its schemas, as planners see it."""
        infos = []
        for name, card in self._cards.items():
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

    async def call(self, agent: str, skill: str, /, **args: Any) -> JsonValue:
        """Call one skill as the user; the result, or the skill's error raised typed.

        A skill that asks for more input raises InputRequired: answer with :meth:`resume`.
        """
        result, _task = await self._ready().send(agent, skill, args, context_id=uuid.uuid4().hex)
        return result

    async def resume(self, agent: str, task_id: str, /, **args: Any) -> JsonValue:
        """Answer an input-required task: run its skill again with ``args`` updating the first
        call's; the result, or the error (InputRequired again, if it asks again)."""
        router = self._ready()
        result, _task = await router.send(
            agent, "", args, context_id=uuid.uuid4().hex, task_id=task_id
        )
        return result

    async def stream(
        self, agent: str, message: Message, *, principal: str = USER, task_id: str | None = None
    ) -> AsyncIterator[StreamResponse]:
        """Send an A2A message to ``agent`` and yield its task's events as they are produced.

        The message names its skill in ``metadata["skill"]`` (unless the agent has one) and has
        one data part (the arguments) or one text part; with ``message.task_id`` set it answers that
        input-required task. ``principal`` is ``"user"`` or ``"user:<name>"`` (the A2A gateway
        sends as ``user:<identity>``); the security policy sees it as the sender. ``task_id``
        is the id a new task gets (default: a fresh one). This is the A2A gateway's own path,
        so both give the same states and artifacts.
        """
        router = self._ready()
        sender = _principal(principal)
        async for event in router.stream(agent, message, sender=sender, task_id=task_id):
            yield event

    async def send(
        self, agent: str, message: Message, *, principal: str = USER, task_id: str | None = None
    ) -> Task:
        """:meth:`stream`, waited for: the task as it ended (completed, failed, canceled) or
        as it waits (input-required)."""
        task: Task | None = None
        async for event in self.stream(agent, message, principal=principal, task_id=task_id):
            task = apply_event(task, event)
        assert task is not None  # a stream always ends with a status event
        return task

    async def cancel(self, agent: str, task_id: str, *, principal: str = USER) -> None:
        """Cancel a running or input-required task; its stream ends ``canceled``.

        Raises:
            UnknownTaskError: no open task of that id for this principal.
        """
        await self._ready().cancel(agent, task_id, sender=_principal(principal))

    async def generate(self, model: str, request: GenerateRequest) -> GenerateResponse:
        """Run a mesh model directly (planners use this)."""
        handle = self._models.get(model)
        if handle is None:
            raise UnknownModelError(f"no model {model!r}; configured: {sorted(self._models)}")
        response: GenerateResponse = await await_ray(
            handle.generate.remote(request), what=f"model {model!r}"
        )
        return response

    async def run(
        self, goal: str, *, planner: Planner, max_retries: int | None = None
    ) -> RunResult:
        """Plan ``goal``, validate the plan, and execute its DAG; raises RunFailedError on failure.

        ``max_retries`` (default: the mesh's) re-runs a node after a run failure.
        """
        router = self._ready()
        catalog = self.catalog()
        plan = await planner.plan(goal, catalog, self.generate)
        graph = validate_plan(plan, catalog)
        return await execute(
            plan,
            graph,
            router.send,
            run_id=f"run-{int(time.time())}-{uuid.uuid4().hex[:6]}",
            max_retries=self.max_retries if max_retries is None else max_retries,
        )

    # --- inspection --------------------------------------------------------------------------

    async def decisions(self) -> list[Decision]:
        """Every decision the security actors have recorded, in time order."""
        logs: list[list[Decision]] = await asyncio.gather(
            *(
                await_ray(a.decisions.remote(), what="security actor")
                for a in self._security.values()
            )
        )
        if len(logs) == 1:
            return logs[0]  # one actor: its own sequence order
        return sorted((d for log in logs for d in log), key=lambda d: d.at)

    async def audit_heads(self) -> list[AuditHead]:
        """The head (last entry) of every security actor's audit log: keep them somewhere the
        logs' host cannot write, and ``verify_audit(..., heads=)`` (``--anchor``) detects a
        cut-off tail or a rewritten log too."""
        heads: list[AuditHead | None] = await asyncio.gather(
            *(
                await_ray(a.audit_head.remote(), what="security actor")
                for a in self._security.values()
            )
        )
        return [h for h in heads if h is not None]

    async def quarantine(self) -> list[QuarantineItem]:
        """Content the security actors hold in quarantine (kept whole, for review)."""
        held: list[list[QuarantineItem]] = await asyncio.gather(
            *(
                await_ray(a.quarantine.remote(), what="security actor")
                for a in self._security.values()
            )
        )
        return sorted((item for items in held for item in items), key=lambda i: i.at)

    async def reset_breaker(self, agent: str) -> bool:
        """Close the circuit breaker of ``agent`` (an agent or a ``user`` principal) on every
        security actor, so its calls are vetted again; True if one was open."""
        self._ready()
        if agent not in self._agents and agent != USER and not _NAMED_USER.match(agent):
            raise UnknownAgentError(agent, known=list(self._agents))
        closed: list[bool] = await asyncio.gather(
            *(
                await_ray(a.reset_breaker.remote(agent), what="security actor")
                for a in self._security.values()
            )
        )
        return any(closed)

    def model_handle(self, name: str) -> ActorHandle:
        """The model service actor of ``name`` (tests read a scripted model's calls from it)."""
        if name not in self._models:
            raise UnknownModelError(f"no model {name!r}; configured: {sorted(self._models)}")
        return self._models[name]

    def agent_handle(self, name: str) -> ActorHandle:
        """The actor of agent ``name`` (for fault-injection tests and operations)."""
        self._ready()
        if name not in self._agents:
            raise UnknownAgentError(name, known=list(self._agents))
        return self._agents[name]

"""The mesh: agents as Ray actors, a security actor on every path, tools, models and plans.

``Mesh`` is the one object users hold. Started with no address it runs an embedded local Ray;
with an address it joins a cluster. It is the only place that turns the plain classes into
actors (users never call ``ray.remote``), and it speaks for the "user" principal when it calls
skills or runs a plan.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import ray
from a2a.types import AgentCard, Message, StreamResponse, Task
from pydantic import BaseModel, JsonValue
from ray.actor import ActorHandle

from agentmesh._private import mesh_security
from agentmesh._private.decisions import Decision, QuarantineItem
from agentmesh._private.durable import DurableRuns, check_factory, open_store
from agentmesh._private.mesh_actors import MeshActors, SecuritySetup
from agentmesh._private.mesh_runs import MeshRuns, retry_policy
from agentmesh._private.mesh_start import check_agents, check_models, check_replicas
from agentmesh._private.policy_schema import Policy, load_policy
from agentmesh._private.principal import NAMED_USER, USER, check_principal
from agentmesh._private.ray_init import ensure_ray
from agentmesh._private.record_events import note_model_call
from agentmesh._private.record_sqlite import open_recorder
from agentmesh._private.router import Router
from agentmesh._private.structured import generate_output
from agentmesh._private.tool_vetting import default_pins_path
from agentmesh.agent import Agent
from agentmesh.audit import AuditHead, default_audit_dir
from agentmesh.breaker import BreakerPolicy, Breakers
from agentmesh.errors import AgentMeshError, ConfigError, UnknownAgentError, UnknownModelError
from agentmesh.inference import GenerateRequest, GenerateResponse, ModelSpec
from agentmesh.models import ModelCache, ModelEntry, ModelRoute, Usage
from agentmesh.planner import SkillInfo
from agentmesh.protocols.a2a_tasks import apply_event
from agentmesh.protocols.mcp import McpServerConfig, ToolInfo
from agentmesh.recording import Recorder, RunEvent
from agentmesh.remote import RemoteAgent
from agentmesh.retry import RetryPolicy
from agentmesh.runs import RunStore
from agentmesh.telemetry import Telemetry
from agentmesh.tools import ToolLimits

__all__ = ["USER", "Mesh"]


M = TypeVar("M", bound=BaseModel)


#: Mesh's default breaker policy (a module constant: a default argument is built once).
DEFAULT_BREAKER = BreakerPolicy()


class Mesh(MeshRuns):
    """A running set of agents. Use ``async with Mesh(...) as mesh:``.

    Args:
        agents: the agent classes; each becomes one Ray actor named by its ``name``.
        tools: MCP servers to connect once at start and keep open.
        models: mesh models by name: a backend spec (``LlamaCppModel``, ``ScriptedModel``,
            ...) or a ``ModelEntry`` (the spec with a version, prices and capabilities).
        routes: names that route model calls over several models (cheapest capable first,
            fallback on error or timeout, a canary share); agents and planners may name a
            route wherever they name a model. See :mod:`agentmesh.models`.
        model_cache: turns on the model services' response cache (None: off).
        policy: a policy pack name under policies/, a YAML path, or a Policy.
        address: a Ray cluster to join; None starts an embedded local Ray.
        num_cpus: logical CPUs of the embedded Ray (ignored when joining a cluster).
        retry: the nodes' attempts, backoff, time limits and each run's retry budget
            (default: ``RetryPolicy()``: dead or lost agents and timeouts are retried).
        max_retries: the older shorthand: that many retries of every run failure.
        breaker: when an agent's (driver side) or a model's (per calling process) circuit
            breaker opens; None: no breakers.
        breaker_clock: the driver's breakers' monotonic clock (tests pass a fake one).
        max_restarts: how often Ray restarts a dead agent's actor (on another node if its
            own left); the node it was running is then retried per ``retry``.
        start_timeout_s: how long every actor may take to be placed and start; past it,
            start raises PlacementError naming the agents still waiting. A restarted agent
            gets as long before its node fails with AgentLostError, unless the retry
            policy's ``restart_timeout_s`` says otherwise.
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
        replicas: actors per agent name, overriding the classes' ``replicas`` (scale an agent
            at deployment without editing its class).
        run_store: where runs are checkpointed after every node (see :mod:`agentmesh.runs`):
            a RunStore, or the path of a SQLite file; default
            ``$AGENTMESH_STATE_DIR/runs.db``, else ``./.agentmesh/runs.db``.
        factory: ``package.module:function`` returning a Mesh like this one, recorded with
            each run, so ``agentmesh resume RUN_ID`` can rebuild the mesh in a new process.
        record: keep a flight recording of every run (see :mod:`agentmesh.recording`).
        telemetry: export each recorded run as OpenTelemetry traces and metrics (see
            :mod:`agentmesh.telemetry`); None: no export.
        recorder: where recordings go: a Recorder, or the path of a SQLite file; default
            ``$AGENTMESH_STATE_DIR/recordings.db``, else ``./.agentmesh/recordings.db``.
    """

    def __init__(
        self,
        agents: Sequence[type[Agent]],
        *,
        tools: Sequence[McpServerConfig] = (),
        models: Mapping[str, ModelSpec | ModelEntry] | None = None,
        routes: Mapping[str, ModelRoute] | None = None,
        model_cache: ModelCache | None = None,
        policy: str | Policy = "default",
        address: str | None = None,
        num_cpus: int | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        breaker: BreakerPolicy | None = DEFAULT_BREAKER,
        breaker_clock: Callable[[], float] = time.monotonic,
        max_restarts: int = 3,
        start_timeout_s: float = 120.0,
        tool_limits: ToolLimits | None = None,
        remote_agents: Sequence[RemoteAgent] = (),
        security_pool: int = 1,
        audit_dir: str | os.PathLike[str] | None = None,
        audit_key: bytes | None = None,
        replicas: Mapping[str, int] | None = None,
        run_store: RunStore | str | os.PathLike[str] | None = None,
        factory: str | None = None,
        record: bool = True,
        recorder: Recorder | str | os.PathLike[str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        check_agents(agents, remote_agents)
        self.agent_classes = list(agents)
        self.remote_agents = list(remote_agents)
        self.servers = list(tools)
        self.routes = dict(routes or {})
        self.models = check_models(agents, models or {}, self.routes)
        self.model_cache = model_cache
        self.usage = Usage()
        """The driver's own model calls (``generate``: planners, re-planners), summed."""
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.address = address
        self.num_cpus = num_cpus
        self.retry = retry_policy(retry, max_retries)
        self.breaker = breaker
        self.breakers = Breakers(breaker, clock=breaker_clock)
        """The driver's breakers: ``agent:<name>`` (plan nodes), ``model:<name>`` (generate)."""
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(f"max_restarts is a whole number >= 0, not {max_restarts!r}")
        self.max_restarts = max_restarts
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
        self.replicas = check_replicas(agents, replicas or {})
        self.run_store = open_store(run_store)  # a default path is resolved here, like audit
        self.factory = check_factory(factory)
        self.recorder = open_recorder(recorder) if record else None
        if telemetry is not None and not record:
            raise ConfigError("telemetry exports runs' flight recordings: keep record=True")
        self.telemetry = telemetry
        self._runs: DurableRuns | None = None
        self._started_ray = False
        self._actors = MeshActors()

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
            security = SecuritySetup(
                policy=self.policy,
                servers=self.servers,
                limits=self.tool_limits,
                pool=self.security_pool,
                audit_dir=str(self.audit_dir),
                audit_key=self._audit_key,
            )
            await self._actors.start(
                self.agent_classes,
                self.remote_agents,
                self.models,
                routes=self.routes,
                model_cache=self.model_cache,
                security=security,
                start_timeout_s=self.start_timeout_s,
                driver=USER,
                replicas=self.replicas,
                max_restarts=self.max_restarts,
                breaker=self.breaker,
            )
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Stop the mesh's actors (and the embedded Ray, if this mesh started it)."""
        if self._runs is not None:
            self._runs.close()
            self._runs = None
        await self._actors.close()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    # --- using it ----------------------------------------------------------------------------

    def _ready(self) -> Router:
        router = self._actors.router
        if router is None:
            raise ConfigError("the mesh is not started: use `async with Mesh(...)` or start()")
        return router

    def cards(self) -> list[AgentCard]:
        """The A2A Agent Cards of every agent in the mesh."""
        self._ready()
        return list(self._actors.cards.values())

    def tools(self) -> list[ToolInfo]:
        """Every tool the connected MCP servers offer."""
        return list(self._actors.tools)

    def catalog(self) -> list[SkillInfo]:
        """Every skill in the mesh, with its schemas, as planners see it."""
        return self._actors.catalog()

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
        sender = check_principal(principal)
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
        await self._ready().cancel(agent, task_id, sender=check_principal(principal))

    @overload
    async def generate(self, model: str, request: GenerateRequest) -> GenerateResponse: ...
    @overload
    async def generate(
        self, model: str, request: GenerateRequest, *, output: type[M], max_attempts: int = 3
    ) -> M: ...
    async def generate(
        self,
        model: str,
        request: GenerateRequest,
        *,
        output: type[BaseModel] | None = None,
        max_attempts: int = 3,
    ) -> GenerateResponse | BaseModel:
        """Run a mesh model (or route) directly (planners use this), through the model's
        breaker, counted in :attr:`usage`; with ``output=`` a validated instance, re-prompted
        with the errors as :meth:`Agent.generate` does."""
        router = self._actors.model_router
        if not router.knows(model):
            raise UnknownModelError(f"no model or route {model!r}; configured: {router.names()}")

        async def send(request: GenerateRequest) -> GenerateResponse:
            started = time.perf_counter()
            try:
                answer = await router.generate(
                    model, request, breakers=self.breakers, usage=self.usage
                )
            except AgentMeshError as exc:  # recorded when a run is planning (record_sink)
                note_model_call(USER, model, request, started, error=exc)
                raise
            note_model_call(USER, model, request, started, response=answer)
            return answer

        if output is None:
            return await send(request)
        return await generate_output(send, request, output, max_attempts=max_attempts, model=model)

    # --- inspection --------------------------------------------------------------------------

    def events(self, run_id: str) -> list[RunEvent]:
        """A run's flight recording, in order ([] if it was not recorded)."""
        return self.recorder.events(run_id) if self.recorder is not None else []

    async def decisions(self) -> list[Decision]:
        """Every decision the security actors have recorded, in time order."""
        return await mesh_security.decisions(self._actors.security.values())

    async def audit_heads(self) -> list[AuditHead]:
        """The head (last entry) of every security actor's audit log: keep them somewhere the
        logs' host cannot write, and ``verify_audit(..., heads=)`` (``--anchor``) detects a
        cut-off tail or a rewritten log too."""
        return await mesh_security.audit_heads(self._actors.security.values())

    async def quarantine(self) -> list[QuarantineItem]:
        """Content the security actors hold in quarantine (kept whole, for review)."""
        return await mesh_security.quarantine(self._actors.security.values())

    async def reset_breaker(self, agent: str) -> bool:
        """Close the circuit breaker of ``agent`` (an agent or a ``user`` principal) on every
        security actor, so its calls are vetted again; True if one was open."""
        self._ready()
        if agent not in self._actors.agents and agent != USER and not NAMED_USER.match(agent):
            raise UnknownAgentError(agent, known=list(self._actors.agents))
        return await mesh_security.reset_breaker(self._actors.security.values(), agent)

    def model_handle(self, name: str, replica: int = 0) -> ActorHandle:
        """A model service actor of ``name`` (tests read a scripted model's calls from it)."""
        return self._actors.model(name, replica)

    def agent_handle(self, name: str) -> ActorHandle:
        """The actor of agent ``name`` (for fault-injection tests and operations)."""
        self._ready()
        return self._actors.agent(name)

    def placement(self) -> dict[str, list[str]]:
        """The Ray node id of each agent's actor(s), as placed at start: where its resources,
        labels and strategy put it (``ray.nodes()`` tells the nodes' addresses and labels)."""
        self._ready()
        return {name: list(nodes) for name, nodes in self._actors.nodes.items()}

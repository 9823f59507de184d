"""Starting the mesh's actors: the agent classes checked, agents placed by their resources,
and the start-up probes.

Kept apart from :mod:`agentmesh.mesh` so the mesh reads as what it offers; these are the
mechanics of turning plain classes into placed, answering Ray actors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar, cast

import ray
from ray.actor import ActorHandle
from ray.util.placement_group import PlacementGroup

from agentmesh._private.host import CONTROL_THREADS, AgentHost, host_slots
from agentmesh._private.model_router import ModelRouter, check_routes
from agentmesh._private.placement import replica_options
from agentmesh._private.router import await_ray
from agentmesh.agent import Agent
from agentmesh.breaker import BreakerPolicy
from agentmesh.errors import (
    AgentUnavailableError,
    ConfigError,
    ModelError,
    PlacementError,
    UnknownModelError,
)
from agentmesh.inference import ModelInfo, ModelSpec
from agentmesh.models import ModelEntry, ModelRoute, as_entry
from agentmesh.remote import RemoteAgent

__all__ = [
    "await_started",
    "check_agents",
    "check_models",
    "check_replicas",
    "load_probe",
    "spawn_agent",
]

T = TypeVar("T")


def check_agents(agents: Sequence[type[Agent]], remote_agents: Sequence[RemoteAgent]) -> None:
    """ConfigError unless the mesh's members are Agent classes with unique names, none "user"."""
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


def check_models(
    agents: Sequence[type[Agent]],
    models: Mapping[str, ModelSpec | ModelEntry],
    routes: Mapping[str, ModelRoute],
) -> dict[str, ModelEntry]:
    """The models as registry entries; UnknownModelError for an agent whose model is neither
    a model nor a route of the mesh, ConfigError for a route that names a missing model."""
    entries = {name: as_entry(spec) for name, spec in models.items()}
    check_routes(entries, routes)
    known = sorted([*entries, *routes])
    for cls in agents:
        if cls.model is not None and cls.model not in known:
            raise UnknownModelError(
                f"agent {cls.name!r} uses model {cls.model!r}; configured: {known}"
            )
    return entries


def check_replicas(agents: Sequence[type[Agent]], replicas: Mapping[str, int]) -> dict[str, int]:
    """ConfigError unless ``replicas`` maps the mesh's own agents to whole numbers >= 1."""
    names = {cls.name for cls in agents}
    if unknown := sorted(set(replicas) - names):
        raise ConfigError(f"replicas names agents the mesh does not run: {unknown}")
    for name, count in replicas.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"replicas[{name!r}] is a whole number >= 1, not {count!r}")
    return dict(replicas)


def spawn_agent(
    cls: type[Agent],
    models: ModelRouter,
    *,
    count: int = 1,
    max_restarts: int = 0,
    breaker: BreakerPolicy | None = None,
) -> tuple[tuple[ActorHandle, ...], PlacementGroup | None]:
    """The actors of ``count`` replicas of one agent class, placed by the resources, labels and
    strategy it declares, and the pack placement group holding them (None unless packed).

    Ray restarts a dead actor up to ``max_restarts`` times (on any node that fits, if its own
    left); a call in flight when it died fails, and is never re-run by Ray itself
    (``max_task_retries`` stays 0): the executor decides whether a node is retried.
    """
    options, group = replica_options(cls.resources, count, prefix=f"agentmesh-{cls.name}")
    actor_cls = ray.remote(AgentHost)
    handles = tuple(
        cast(
            ActorHandle,
            actor_cls.options(
                max_concurrency=host_slots(cls) + CONTROL_THREADS,
                max_restarts=max_restarts,
                **opts,
            ).remote(cls, models=models, breaker=breaker),
        )
        for opts in options
    )
    return handles, group


async def await_started(
    probes: dict[str, Awaitable[T]], wants: dict[str, str], *, timeout_s: float
) -> dict[str, T]:
    """Await each actor's first answer; PlacementError naming those that never start."""
    futures = {name: asyncio.ensure_future(probe) for name, probe in probes.items()}
    if not futures:
        return {}
    _, waiting = await asyncio.wait(futures.values(), timeout=timeout_s)
    if waiting:
        for fut in waiting:
            fut.cancel()
        stuck = "; ".join(f"{n}: {wants[n]}" for n, f in futures.items() if f in waiting)
        raise PlacementError(
            f"not placed within {timeout_s:g}s: {stuck}; "
            f"the cluster offers {ray.cluster_resources()}"
        )
    return {name: fut.result() for name, fut in futures.items()}


async def load_probe(name: str, handle: ActorHandle) -> ModelInfo:
    """A model service's info once it has loaded; ModelError if loading it failed."""
    try:
        info: ModelInfo = await await_ray(handle.info.remote(), what=f"model {name!r}")
    except AgentUnavailableError as exc:  # its constructor (the model load) raised
        raise ModelError(f"model {name!r} failed to load: {exc}") from None
    return info

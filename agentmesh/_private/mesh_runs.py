"""How ``Mesh.run`` and ``Mesh.resume_run`` set up one run: its retries and its re-planning.

Kept apart from :mod:`agentmesh.mesh` so the mesh reads as what it offers. A run's
:class:`~agentmesh._private.node_retry.NodeRetrier` is built before anything is planned (bad
retry settings fail first) and lives as long as the run, so its retry budget covers every plan
the run goes through; a dead agent is brought back by
:func:`~agentmesh._private.mesh_recover.recover_agent` before its node is retried.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence

import networkx as nx

from agentmesh._private.mesh_actors import MeshActors
from agentmesh._private.mesh_recover import recover_agent
from agentmesh._private.node_retry import Cancel, NodeRetrier
from agentmesh.breaker import Breakers
from agentmesh.errors import ConfigError
from agentmesh.executor import RunResult
from agentmesh.planner import Generate, Plan, Planner, Replanner, SkillInfo, validate_plan
from agentmesh.retry import RetryPolicy

__all__ = ["PlannerRevise", "check_max_replans", "new_run_id", "retrier", "retry_policy"]


def new_run_id() -> str:
    return f"run-{int(time.time())}-{uuid.uuid4().hex[:6]}"


def retry_policy(retry: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
    """The policy ``retry`` or the shorthand ``max_retries`` asks for (not both)."""
    if retry is not None and max_retries is not None:
        raise ConfigError("give retry or max_retries, not both")
    if max_retries is not None:
        return RetryPolicy.from_max_retries(max_retries)
    return retry or RetryPolicy()


def retrier(
    policy: RetryPolicy,
    *,
    actors: MeshActors,
    breakers: Breakers,
    cancel: Cancel,
    rng: random.Random | None,
    start_timeout_s: float,
) -> NodeRetrier:
    """One run's attempts under ``policy``; a restarted agent gets the policy's
    ``restart_timeout_s`` (default: the mesh's start timeout) to answer again."""
    wait_s = policy.restart_timeout_s or start_timeout_s

    async def recover(agent: str) -> None:
        await recover_agent(actors, agent, timeout_s=wait_s)

    return NodeRetrier(policy, breakers=breakers, rng=rng, cancel=cancel, recover=recover)


def check_max_replans(max_replans: int) -> int:
    if isinstance(max_replans, bool) or not isinstance(max_replans, int) or max_replans < 0:
        raise ConfigError(f"max_replans is a whole number >= 0, not {max_replans!r}")
    return max_replans


class PlannerRevise:
    """A run's re-planning: ``planner.replan`` of the failed run, validated against the
    mesh's skills like any plan (a PlanValidationError fails the run with the reason)."""

    def __init__(
        self,
        planner: Replanner,
        catalog: Sequence[SkillInfo],
        generate: Generate,
        *,
        max_replans: int,
    ) -> None:
        self.planner = planner
        self.catalog = catalog
        self.generate = generate
        self.max_replans = max_replans

    @classmethod
    def of(
        cls, planner: Planner | None, catalog: Sequence[SkillInfo], generate: Generate, n: int
    ) -> PlannerRevise | None:
        """The re-planning of ``planner`` (None when it cannot re-plan or ``n`` is 0)."""
        if check_max_replans(n) == 0 or not isinstance(planner, Replanner):
            return None
        return cls(planner, catalog, generate, max_replans=n)

    async def __call__(self, failed: RunResult) -> tuple[Plan, nx.DiGraph] | None:
        plan = await self.planner.replan(failed, self.catalog, self.generate)
        if plan is None:
            return None
        return plan, validate_plan(plan, self.catalog)

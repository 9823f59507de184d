"""How a mesh runs plans: ``Mesh.run``, ``resume_run`` and ``approve_run`` (the
:class:`MeshRuns` base class of ``Mesh``), and each run's retries and re-planning.

Kept apart from :mod:`agentmesh.mesh` so the mesh reads as its lifecycle and calls. A run's
:class:`~agentmesh._private.node_retry.NodeRetrier` is built before anything is planned (bad
retry settings fail first) and lives as long as the run, so its retry budget covers every plan
the run goes through; a dead agent is brought back by
:func:`~agentmesh._private.mesh_recover.recover_agent` before its node is retried.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Sequence

import networkx as nx

from agentmesh._private.durable import DurableRuns, check_run_id, open_store
from agentmesh._private.mesh_actors import MeshActors
from agentmesh._private.mesh_recover import recover_agent
from agentmesh._private.mesh_replay import replay_rng, replay_run
from agentmesh._private.node_retry import Cancel, NodeRetrier
from agentmesh._private.principal import USER, check_principal
from agentmesh._private.record_sink import SINK
from agentmesh._private.router import Router
from agentmesh.breaker import Breakers
from agentmesh.errors import ConfigError
from agentmesh.executor import RunResult
from agentmesh.inference import GenerateRequest, GenerateResponse
from agentmesh.models import Budget
from agentmesh.planner import Generate, Plan, Planner, Replanner, SkillInfo, validate_plan
from agentmesh.recording import Recorder
from agentmesh.replay import ReplayReport
from agentmesh.retry import RetryPolicy
from agentmesh.runs import RunStore
from agentmesh.telemetry import Telemetry

__all__ = [
    "MeshRuns",
    "PlannerRevise",
    "check_max_replans",
    "new_run_id",
    "retrier",
    "retry_policy",
]


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


class MeshRuns:
    """The plan-running half of :class:`~agentmesh.Mesh` (a base class, so the mesh's module
    reads as its lifecycle and calls): run a goal, resume a stored run, answer its approvals."""

    # set by Mesh.__init__ (and Mesh.start for the actors)
    retry: RetryPolicy
    breakers: Breakers
    start_timeout_s: float
    run_store: RunStore | str | os.PathLike[str] | None
    factory: str | None
    recorder: Recorder | None
    telemetry: Telemetry | None
    _runs: DurableRuns | None
    _actors: MeshActors

    def _ready(self) -> Router:
        raise NotImplementedError

    def catalog(self) -> list[SkillInfo]:
        raise NotImplementedError

    async def generate(self, model: str, request: GenerateRequest) -> GenerateResponse:
        raise NotImplementedError

    async def run(
        self,
        goal: str,
        *,
        planner: Planner,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        rng: random.Random | None = None,
        run_id: str | None = None,
        max_replans: int = 1,
        budget: Budget | None = None,
    ) -> RunResult:
        """Plan ``goal``, validate the plan, and execute its DAG; raises RunFailedError on failure.

        ``retry`` or ``max_retries`` replace the mesh's retry policy for this run; ``rng``
        draws the backoff jitter (seed it for a reproducible run). A dead agent is restarted
        by Ray and joined again before its node is retried. When a node fails for good and
        the planner is a :class:`~agentmesh.planner.Replanner`, it revises the plan for what
        remains (at most ``max_replans`` times; each replaced plan is kept in
        ``RunResult.revisions``). The run is checkpointed in the run store after every node,
        under ``run_id`` (default: a fresh one), so :meth:`resume_run` can finish it if this
        process dies. Raises RunPaused (not a failure) when nodes wait for a human's approval:
        answer with :meth:`approve_run`, from this process or another. Past ``budget`` (the
        nodes' model tokens or cost) no more nodes start and the run fails with
        BudgetExceededError; ``RunResult.usage`` sums what its nodes' models used.
        """
        router = self._ready()
        run_id = check_run_id(run_id) if run_id is not None else new_run_id()
        retrier = self._retrier(retry, max_retries, rng)
        catalog = self.catalog()
        revise = PlannerRevise.of(planner, catalog, self.generate, max_replans)
        planning = SINK.set([])  # the planner's model calls, for the run's recording
        try:
            plan = await planner.plan(goal, catalog, self.generate)
            planned = SINK.get() or []
        finally:
            SINK.reset(planning)
        graph = validate_plan(plan, catalog)
        return await self._durable().start(
            plan,
            graph,
            router.send,
            run_id=run_id,
            retrier=retrier,
            security=list(self._actors.security.values()),
            revise=revise,
            budget=budget,
            planned=planned,
        )

    async def resume_run(
        self,
        run_id: str,
        *,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        rng: random.Random | None = None,
        planner: Planner | None = None,
        max_replans: int = 1,
        budget: Budget | None = None,
    ) -> RunResult:
        """Finish a stored run (its driver died, or it failed): the stored plan is validated
        against this mesh's skills, succeeded nodes keep their outputs and labels, and every
        other node runs again; side-effecting tool calls already made are not repeated (their
        recorded results come back). With a re-planning ``planner``, a node that fails for
        good is re-planned as in :meth:`run` (re-plans before the resume count); ``budget``
        as in :meth:`run`, the kept nodes' usage counted. Raises RunFailedError if it fails
        again.

        Raises:
            UnknownRunError: no run of that id in the run store.
            RunFinishedError: the run already succeeded.
            PlanValidationError: the stored plan does not fit this mesh (nothing runs).
        """
        router = self._ready()
        retrier = self._retrier(retry, max_retries, rng)
        catalog = self.catalog()
        return await self._durable().resume(
            run_id,
            catalog,
            router.send,
            retrier=retrier,
            security=list(self._actors.security.values()),
            revise=PlannerRevise.of(planner, catalog, self.generate, max_replans),
            budget=budget,
        )

    async def approve_run(
        self,
        run_id: str,
        step_id: str,
        *,
        approve: bool,
        by: str = USER,
        planner: Planner | None = None,
        max_replans: int = 1,
        budget: Budget | None = None,
    ) -> RunResult:
        """Answer what node ``step_id`` of a paused run asks (the run may have been started by
        another process, since gone), then resume the run: a yes runs the node again with its
        question approved, a no fails it with ApprovalDenied (its descendants are skipped and
        nothing is re-planned). Raises RunPaused again while other nodes still wait.

        Raises:
            NoApprovalPendingError: that node waits for no answer.
            UnknownRunError: no such run in the run store.
        """
        self._ready()
        await self._durable().answer(run_id, step_id, approve=approve, by=check_principal(by))
        return await self.resume_run(
            run_id, planner=planner, max_replans=max_replans, budget=budget
        )

    async def replay(
        self,
        run_id: str,
        *,
        live_effects: bool = False,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
    ) -> ReplayReport:
        """Run recorded run ``run_id`` again on this mesh, every model and tool answer served
        from its flight recording where the call is unchanged, and compare the two recordings
        (see :mod:`agentmesh.replay`). On the run's own mesh the report says whether the run
        is reproducible; on a changed one (a prompt, a model, a policy, an agent's code),
        where it diverged, changed calls having gone live. A side-effecting tool call the
        recording lacks is refused (ReplayEffectError) unless ``live_effects``. Retries follow
        the mesh's policy unless ``retry`` or ``max_retries`` give the one the run had (the
        store does not keep it); their jitter is seeded.

        Raises:
            UnknownRunError: no such run in the run store.
            NoRecordingError: the recorder holds no recording of it.
            ConfigError: this mesh records nothing (``record=False``).
            PlanValidationError: its plan does not fit this mesh's skills.
        """
        router = self._ready()
        catalog = self.catalog()
        return await replay_run(
            run_id,
            durable=self._durable(),
            recorder=self.recorder,
            router=router,
            catalog=catalog,
            retrier=self._retrier(retry, max_retries, replay_rng()),
            security=list(self._actors.security.values()),
            live_effects=live_effects,
        )

    def _retrier(
        self, retry: RetryPolicy | None, max_retries: int | None, rng: random.Random | None
    ) -> NodeRetrier:
        """One run's attempts: the mesh's retry policy unless the run gives its own."""
        if retry is None and max_retries is None:
            policy = self.retry
        else:
            policy = retry_policy(retry, max_retries)
        return retrier(
            policy,
            actors=self._actors,
            breakers=self.breakers,
            cancel=self._ready().cancel,
            rng=rng,
            start_timeout_s=self.start_timeout_s,
        )

    def _durable(self) -> DurableRuns:
        """The runs on ``run_store`` (a store assigned since gets its own ledger actor)."""
        self.run_store = open_store(self.run_store)
        if self._runs is None or self._runs.store is not self.run_store:
            if self._runs is not None:
                self._runs.close()
            self._runs = DurableRuns(self.run_store, self.factory)
        self._runs.recorder = self.recorder  # the mesh's, as it is now (a bench turns it off)
        self._runs.telemetry = self.telemetry
        return self._runs

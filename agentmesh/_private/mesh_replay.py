"""``Mesh.replay``: run a recorded run again on its recorded answers and compare.

The replay executes the run store's plans (unredacted, unlike the recording's): the first one,
and on a node's failure for good the next recorded re-plan, so the planner is not asked again.
It is a run of its own (id ``<run>.replay-<hex>``), checkpointed and recorded like any; its
skill calls carry the tape's name, which serves recorded model and tool answers (see
:mod:`agentmesh._private.replay_tape`). Its recording is then compared with the original's
(:mod:`agentmesh._private.replay_diff`).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence

import networkx as nx
import ray
from ray.actor import ActorHandle

from agentmesh._private.durable import DurableRuns
from agentmesh._private.node_retry import NodeRetrier
from agentmesh._private.record_events import error_info
from agentmesh._private.replay_diff import compare
from agentmesh._private.replay_tape import start_tape
from agentmesh._private.router import Router, await_ray
from agentmesh.errors import ConfigError, NoRecordingError, RunFailedError, RunPaused
from agentmesh.executor import RunResult
from agentmesh.planner import Plan, SkillInfo, validate_plan
from agentmesh.recording import Recorder
from agentmesh.replay import Divergence, ReplayCounts, ReplayReport

__all__ = ["TapeRevise", "replay_run"]


class TapeRevise:
    """A replay's re-planning: the recorded re-plans, in order (None once they run out)."""

    def __init__(self, plans: Sequence[Plan], catalog: Sequence[SkillInfo]) -> None:
        self.plans = list(plans)
        self.catalog = catalog
        self.max_replans = len(self.plans)

    async def __call__(self, failed: RunResult) -> tuple[Plan, nx.DiGraph] | None:
        if not self.plans:
            return None
        plan = self.plans.pop(0)
        return plan, validate_plan(plan, self.catalog)


async def replay_run(
    run_id: str,
    *,
    durable: DurableRuns,
    recorder: Recorder | None,
    router: Router,
    catalog: Sequence[SkillInfo],
    retrier: NodeRetrier,
    security: Sequence[ActorHandle],
    live_effects: bool,
) -> ReplayReport:
    """Replay ``run_id`` (see the module docstring) and report how it compares."""
    if recorder is None:
        raise ConfigError("a replay is compared through its own recording: Mesh(record=True)")
    info = await asyncio.to_thread(durable.store.get_run, run_id)  # UnknownRunError
    events = await asyncio.to_thread(recorder.events, run_id)
    if not any(e.body.kind == "plan" for e in events):
        raise NoRecordingError(run_id)
    plans = [r.plan for r in info.revisions] + [info.plan]
    graph = validate_plan(plans[0], catalog)  # PlanValidationError: not this mesh's skills
    replay_id = f"{run_id[:100]}.replay-{uuid.uuid4().hex[:6]}"
    tape = start_tape(f"agentmesh-tape-{replay_id}", events, live_effects=live_effects)
    error = None
    try:
        try:
            result = await durable.start(
                plans[0],
                graph,
                router.send,
                run_id=replay_id,
                retrier=retrier,
                security=security,
                revise=TapeRevise(plans[1:], catalog),
                replay=f"agentmesh-tape-{replay_id}",
            )
        except (RunFailedError, RunPaused) as exc:
            result, error = exc.result, error_info(exc)
        counts: ReplayCounts = await await_ray(tape.counts.remote(), what="replay tape")
    finally:
        ray.kill(tape)
    replayed = await asyncio.to_thread(recorder.events, replay_id)
    divergences = compare(events, replayed)
    if result.output != info.output:
        divergences.append(
            Divergence(kind="output", expected_output=info.output, got_output=result.output)
        )
    return ReplayReport(
        run_id=run_id,
        replay_run_id=replay_id,
        identical=not divergences,
        divergences=divergences,
        counts=counts,
        output=result.output,
        error=error,
    )


def replay_rng() -> random.Random:
    """The backoff jitter of a replay's retries (seeded: a replay waits alike every time)."""
    return random.Random(0)

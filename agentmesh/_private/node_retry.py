"""The retry loop of a run's nodes: breakers, time limits, backoff, recovery and the budget.

Kept out of :mod:`agentmesh.executor` so the executor stays about scheduling the DAG: it hands
each node's one attempt (a callable that takes the A2A task id to use) to
:meth:`NodeRetrier.run`, with a callback that records each failure on the node.

One attempt: the agent's breaker is asked first (open: fail fast, nothing sent); the call runs
under the node's time limit, and past it the agent is asked to cancel the task and the attempt
fails with NodeTimeoutError. A failure the policy retries, with attempts and the run's budget
left, waits its jittered backoff; after a dead or lost actor the mesh's ``recover`` waits for Ray
to restart it (on another node if its own left) and joins it to the mesh again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agentmesh.breaker import Breakers, CircuitBreaker, call_through
from agentmesh.errors import (
    AgentMeshError,
    AgentUnavailableError,
    BreakerOpenError,
    NodeTimeoutError,
)
from agentmesh.planner import PlanStep
from agentmesh.protocols.a2a_tasks import new_id
from agentmesh.retry import GiveUp, RetryPolicy

__all__ = ["Cancel", "NodeRetrier", "OnFailure", "Recover"]

T = TypeVar("T")
Attempt = Callable[[str], Awaitable[T]]
#: Cancel ``(agent, task_id)``; raises (UnknownTaskError ...) when there is nothing to cancel.
Cancel = Callable[[str, str], Awaitable[None]]
#: Wait until ``agent`` answers again and is joined to the mesh; raises AgentLostError if not.
Recover = Callable[[str], Awaitable[None]]
#: ``(error, pause before the next attempt or None, why retries stopped or None)``.
OnFailure = Callable[[BaseException, float | None, GiveUp | None], None]

#: How long a timed-out node's cancel may take (the agent answers it on another thread).
CANCEL_WAIT_S = 10.0


class NodeRetrier:
    """The attempts of every node of one run (see the module docs); ``budget`` is the run's
    retries left."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        breakers: Breakers | None = None,
        rng: random.Random | None = None,
        cancel: Cancel | None = None,
        recover: Recover | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.breakers = breakers
        self.rng = rng or random.Random()
        self.cancel = cancel
        self.recover = recover
        self.sleep = sleep
        self.budget = policy.retry_budget

    async def run(self, step: PlanStep, attempt: Attempt[T], on_failure: OnFailure) -> T:
        """Attempt ``step`` until it succeeds or its retries stop; then raise its last error
        (each failure was reported to ``on_failure`` first)."""
        breaker = self.breakers.get(f"agent:{step.agent}") if self.breakers else None
        limit = step.timeout_s if step.timeout_s is not None else self.policy.timeout_s
        tries = 0
        while True:
            tries += 1
            try:
                return await self._once(step, attempt, limit, breaker)
            except Exception as exc:
                stop = self._stop(exc, tries)
                delay = None if stop is not None else self.policy.backoff(tries, self.rng)
                on_failure(exc, delay, stop)
                if stop is not None:
                    raise
                self.budget -= 1
                dead = isinstance(exc, AgentUnavailableError)
            if delay:
                await self.sleep(delay)
            if dead and self.recover is not None:
                try:
                    await self.recover(step.agent)
                except AgentMeshError as lost:
                    on_failure(lost, None, "lost")
                    raise

    def _stop(self, error: BaseException, tries: int) -> GiveUp | None:
        if isinstance(error, BreakerOpenError):
            return "breaker"
        if not self.policy.retries(error):
            return "not_retryable"
        if tries >= self.policy.max_attempts:
            return "attempts"
        if self.budget <= 0:
            return "budget"
        return None

    async def _once(
        self,
        step: PlanStep,
        attempt: Attempt[T],
        limit: float | None,
        breaker: CircuitBreaker | None,
    ) -> T:
        task_id = new_id()
        if limit is None:
            return await call_through(breaker, lambda: attempt(task_id))
        return await call_through(breaker, lambda: self._timed(step, attempt, task_id, limit))

    async def _timed(self, step: PlanStep, attempt: Attempt[T], task_id: str, limit: float) -> T:
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await attempt(task_id)
        except TimeoutError:
            if not timer.expired():  # raised by the attempt itself, not our limit
                raise
        canceled = await self._cancel(step.agent, task_id)
        raise NodeTimeoutError(
            step.id, agent=step.agent, timeout_s=limit, task_id=task_id, canceled=canceled
        )

    async def _cancel(self, agent: str, task_id: str) -> bool:
        if self.cancel is None:
            return False
        try:
            await asyncio.wait_for(self.cancel(agent, task_id), CANCEL_WAIT_S)
        except (AgentMeshError, TimeoutError):
            return False
        return True

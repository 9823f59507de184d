"""How plan nodes are retried: attempts, exponential backoff with jitter, a budget per run.

Why a budget: when something systemic breaks (a node with many agents leaves, a shared model
crashes), every node of the run fails at once; per-node retries alone would multiply the load
on whatever is left by ``max_attempts``. The run's ``retry_budget`` caps the retries of all its
nodes together, so a systemic failure fails the run instead of hammering the cluster.

Why full jitter by default: the delay before retry ``n`` is drawn uniformly from
``[0, min(max_delay_s, base_delay_s * multiplier**(n-1))]``. Nodes that failed together (the
common case: one lost node) then retry spread over the whole window instead of in lockstep,
which gives the least contention and total work for the same bound (the classic result of
AWS's "Exponential Backoff and Jitter" study). ``equal`` jitter keeps half the window as a
floor (use it where a minimum pause matters); ``none`` is plain exponential backoff.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentmesh import errors
from agentmesh.errors import AgentLostError, BreakerOpenError, RunError

__all__ = ["DEFAULT_RETRY_ON", "GiveUp", "RetryPolicy"]

#: Why a node's retries stopped: its error is not retried, its attempts or the run's retry budget
#: are spent, its agent's circuit breaker is open, or its agent could not be brought back.
GiveUp = Literal["not_retryable", "attempts", "budget", "breaker", "lost"]

#: Retried by default: a dead or lost agent actor (Ray restarts it) and a timed-out node. A
#: skill's own failure is not (it would most likely fail again), unless ``retry_on`` says so.
DEFAULT_RETRY_ON = ("AgentUnavailableError", "NodeTimeoutError")

# Never retried whatever retry_on says: the breaker's fail-fast refusal (retrying defeats it)
# and an agent that could not be brought back (its restart already waited its bound).
_NEVER = (BreakerOpenError, AgentLostError)


class RetryPolicy(BaseModel):
    """Retries, backoff and time limits of a run's nodes.

    ``retry_on`` names the run failures that are retried, as error class names of
    :mod:`agentmesh.errors` (subclasses included): ``"RunError"`` retries every run failure.
    User errors and security denials are never retried (they would fail again, or probe the
    policy), and naming one is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=100)
    """Attempts per node, the first included (1: no retries)."""
    base_delay_s: float = Field(default=0.1, ge=0)
    max_delay_s: float = Field(default=10.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1, le=10)
    jitter: Literal["full", "equal", "none"] = "full"
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retry_budget: int = Field(default=10, ge=0)
    """Retries of all the run's nodes together."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Each node's time limit unless its PlanStep sets ``timeout_s`` (None: none)."""
    restart_timeout_s: float | None = Field(default=None, gt=0)
    """How long a retry waits for Ray to restart a dead agent before its node fails with
    AgentLostError (None: the mesh's ``start_timeout_s``)."""

    @field_validator("retry_on")
    @classmethod
    def _run_errors_only(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            error = getattr(errors, name, None)
            if not (isinstance(error, type) and issubclass(error, errors.AgentMeshError)):
                raise ValueError(f"{name!r} is not an agentmesh error class")
            if not issubclass(error, RunError):
                raise ValueError(
                    f"{name!r} is not a run failure: user errors and security denials are "
                    "never retried"
                )
        return names

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError("max_delay_s must be at least base_delay_s")
        return self

    @classmethod
    def from_max_retries(cls, max_retries: int) -> RetryPolicy:
        """The older ``max_retries=n`` setting: n retries of every run failure."""
        if not isinstance(max_retries, int) or max_retries < 0:
            raise errors.ConfigError(f"max_retries is a whole number >= 0, not {max_retries!r}")
        return cls(max_attempts=max_retries + 1, retry_on=("RunError",))

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is one this policy retries (attempts and budget aside)."""
        if not isinstance(error, RunError) or isinstance(error, _NEVER):
            return False
        return any(isinstance(error, getattr(errors, name)) for name in self.retry_on)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The pause before retry number ``retry`` (1 for the first), jittered with ``rng``."""
        cap = min(self.max_delay_s, self.base_delay_s * self.multiplier ** (retry - 1))
        if self.jitter == "full":
            return rng.uniform(0.0, cap)
        if self.jitter == "equal":
            return cap / 2 + rng.uniform(0.0, cap / 2)
        return cap
